//! Audit records: one structured line (target `audit`) per `tools/call`,
//! `resources/read` and `prompts/get`: who, which client, which service and
//! item, how long, what outcome, and the arguments when the service asks.

use std::time::Instant;

use super::Session;

/// One audited request in flight.
pub(super) struct Audit {
    pub(super) name: String,
    pub(super) arguments: Option<String>,
    pub(super) started: Instant,
}

impl Audit {
    /// The audited requests: what they act on, and (when the service logs them) their arguments.
    pub(super) fn of(method: &str, raw: &[u8], with_arguments: bool) -> Option<Box<Audit>> {
        let field = match method {
            "tools/call" | "prompts/get" => "name",
            "resources/read" => "uri",
            _ => return None,
        };
        let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
        let params = v.get("params");
        let name = params
            .and_then(|p| p.get(field))
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        let arguments = with_arguments
            .then(|| {
                params
                    .and_then(|p| p.get("arguments"))
                    .map(|a| a.to_string())
            })
            .flatten();
        Some(Box::new(Audit {
            name,
            arguments,
            started: Instant::now(),
        }))
    }
}

/// "ok", "error" (a JSON-RPC error) or "tool_error" (a result with `isError`).
pub(super) fn outcome(raw: &[u8]) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Shape {
        error: Option<serde::de::IgnoredAny>,
        result: Option<ResultShape>,
    }
    #[derive(serde::Deserialize)]
    struct ResultShape {
        #[serde(rename = "isError")]
        is_error: Option<bool>,
    }
    match serde_json::from_slice::<Shape>(raw) {
        Ok(Shape { error: Some(_), .. }) => "error",
        Ok(Shape {
            result: Some(ResultShape {
                is_error: Some(true),
            }),
            ..
        }) => "tool_error",
        Ok(_) => "ok",
        Err(_) => "unreadable",
    }
}

impl Session {
    /// One structured record per audited request (target `audit`): who, which
    /// client, which service and tool/resource/prompt, how long, what outcome.
    pub(super) fn audit(&self, method: &str, a: &Audit, outcome: &str) {
        tracing::info!(
            target: "audit",
            user = self.owner.as_ref().map(|u| u.as_str()).unwrap_or("anonymous"),
            client_id = self.caller.as_ref().map_or("-", |c| c.client_id.as_str()),
            service = %self.service.name,
            method,
            name = a.name.as_str(),
            duration_ms = a.started.elapsed().as_secs_f64() * 1000.0,
            outcome,
            arguments = a.arguments.as_deref(),
            "audit"
        );
    }
}

/// The record of a request forwarded without a session (a 2026-07-28
/// request passed through to a 2026-07-28 server): the same line as
/// [`Session::audit`] writes.
pub struct Forwarded {
    audit: Option<Box<Audit>>,
    method: String,
    user: String,
    client_id: String,
    service: String,
}

impl Forwarded {
    /// `None` for methods that are not audited.
    pub fn of(
        caller: Option<&crate::caller::Caller>,
        service: &str,
        method: &str,
        raw: &[u8],
        with_arguments: bool,
    ) -> Forwarded {
        Forwarded {
            audit: Audit::of(method, raw, with_arguments),
            method: method.to_string(),
            user: caller.map_or("anonymous".into(), |c| c.user.as_str().to_string()),
            client_id: caller.map_or("-".into(), |c| c.client_id.as_str().to_string()),
            service: service.to_string(),
        }
    }

    /// Write the record, with the outcome read from the answer's bytes.
    pub fn done(&self, answer: Option<&[u8]>) {
        let Some(a) = &self.audit else { return };
        tracing::info!(
            target: "audit",
            user = self.user.as_str(),
            client_id = self.client_id.as_str(),
            service = self.service.as_str(),
            method = self.method.as_str(),
            name = a.name.as_str(),
            duration_ms = a.started.elapsed().as_secs_f64() * 1000.0,
            outcome = answer.map_or("no_answer", outcome),
            arguments = a.arguments.as_deref(),
            "audit"
        );
    }
}
