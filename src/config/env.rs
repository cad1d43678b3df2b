//! `{"$env": "VAR"}` references, resolved once at load time.
//!
//! Deliberately no shell-style `$VAR` expansion: a literal `$` in a password or URL
//! must stay a `$`.

use super::Problem;

pub(super) fn resolve(
    value: &mut serde_json::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(reference) = reference_kind(map) {
                match reference {
                    Ok(("$env", serde_json::Value::String(var))) => match lookup(var) {
                        Some(v) => *value = serde_json::Value::String(v),
                        None => problems.push(Problem {
                            path: path.to_string(),
                            message: format!(
                                "environment variable {var} is not set; export it before starting mcpgate"
                            ),
                        }),
                    },
                    Ok(("$env", _)) => problems.push(Problem {
                        path: path.to_string(),
                        message: "\"$env\" must name an environment variable as a string".into(),
                    }),
                    Ok(("$user", serde_json::Value::String(field))) => {
                        match super::template::user_field(field) {
                            Some(p) => *value = serde_json::Value::String(p.to_string()),
                            None => problems.push(Problem {
                                path: path.to_string(),
                                message: format!(
                                    "\"$user\" must be \"email\" or \"sub\", not {field:?}"
                                ),
                            }),
                        }
                    }
                    Ok(("$userToken", serde_json::Value::String(format))) => {
                        *value = serde_json::Value::String(super::template::user_token(format));
                    }
                    Ok((key, _)) => problems.push(Problem {
                        path: path.to_string(),
                        message: format!("{key:?} must be a string"),
                    }),
                    Err(e) => problems.push(Problem {
                        path: path.to_string(),
                        message: e.to_string(),
                    }),
                }
                return;
            }
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                resolve(v, &child, lookup, problems);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve(v, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        serde_json::Value::String(text) if super::template::has_marker(text) => {
            problems.push(Problem {
                path: path.to_string(),
                message:
                    "contains the private-use character U+E000, which configuration text may not hold"
                        .into(),
            });
        }
        _ => {}
    }
}

/// An object that looks like a reference (a `$` key) but is not a usable one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ReferenceError {
    #[error("unknown reference {0:?}; use {{\"$env\": \"VARIABLE\"}}")]
    Unknown(String),
    #[error("a {0:?} reference must be an object with that single key")]
    NotAlone(&'static str),
}

/// Recognise an object that is a reference (`$env`, `$user`, `$userToken`).
fn reference_kind(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Option<Result<(&'static str, &serde_json::Value), ReferenceError>> {
    const KINDS: [&str; 3] = ["$env", "$user", "$userToken"];
    let key = map.keys().find(|k| k.starts_with('$') && *k != "$schema")?;
    let Some(kind) = KINDS.iter().find(|k| *k == key) else {
        return Some(Err(ReferenceError::Unknown(key.clone())));
    };
    if map.len() != 1 {
        return Some(Err(ReferenceError::NotAlone(kind)));
    }
    map.get(*kind).map(|v| Ok((*kind, v)))
}
