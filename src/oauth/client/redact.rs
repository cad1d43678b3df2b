//! Redaction: what a server said, made safe to show. Text an authorization
//! server sends back (error codes, descriptions) may quote the code, verifier or
//! secret it refuses; [`provider_text`] drops it then, and bounds and cleans it
//! otherwise. [`error_chain`] puts an error and its sources on one line.

use serde_json::{Map, Value};

/// Text a server chose (error codes, descriptions), made safe to show: no
/// control characters, at most 200 characters, and dropped entirely if it
/// echoes one of `secrets` (some servers quote the code or token they refuse).
pub fn provider_text(text: &str, secrets: &[&str]) -> Option<String> {
    if secrets.iter().any(|s| !s.is_empty() && text.contains(s)) {
        return None;
    }
    let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

/// `error: error_description` of an OAuth error body (RFC 6749 §5.2), through
/// [`provider_text`]; nothing else of the body is shown, since it could quote
/// what we sent.
pub fn provider_error_text(body: &[u8], secrets: &[&str]) -> String {
    let json: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
    };
    match field("error") {
        Some(error) => {
            let error = provider_text(error, secrets).unwrap_or_else(|| "unknown_error".into());
            match field("error_description").and_then(|d| provider_text(d, secrets)) {
                Some(d) => format!("{error}: {d}"),
                None => error,
            }
        }
        None => "no OAuth error in the answer".to_string(),
    }
}

/// An error with its sources, on one line. hyper and reqwest often repeat
/// their cause in their own message, so a source already contained is skipped.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_is_clean_and_bounded() {
        assert_eq!(provider_text("bad code abc123", &["abc123"]), None);
        assert_eq!(
            provider_text("expired\r\n", &["abc123"]).as_deref(),
            Some("expired")
        );
        assert_eq!(provider_text("x", &[""]).as_deref(), Some("x"));
        assert_eq!(
            provider_text(&"y".repeat(500), &[]).map(|t| t.len()),
            Some(200)
        );
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
