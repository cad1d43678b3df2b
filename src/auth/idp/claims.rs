//! What an identity provider's claims mean to the gateway (ID token or
//! userinfo alike): a claim by name or by dotted path (Keycloak's
//! `realm_access.roles`), non-empty strings, `email_verified` (the string form
//! only from Google), the display name, and groups. Pure, tested here.

use serde_json::{Map, Value};

/// A claim by name, or by dotted path into nested objects (Keycloak's
/// `realm_access.roles`) when no claim has the name itself.
pub fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

pub fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `email_verified`, or `None` if absent. Only Google is known to send the
/// string form; from anyone else a string is not taken as a yes.
pub fn verified_claim(claims: &Map<String, Value>, google: bool) -> Option<bool> {
    match claims.get("email_verified")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if google => Some(s.eq_ignore_ascii_case("true")),
        Value::Null => None,
        _ => Some(false),
    }
}

pub fn display_name(claims: &Map<String, Value>) -> Option<String> {
    string_claim(claims, "name").or_else(|| string_claim(claims, "preferred_username"))
}

pub fn groups_in(claims: &Map<String, Value>, name: &str) -> Option<Vec<String>> {
    match claim(claims, name)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn email_verified_string_only_from_google() {
        let c = map(json!({"email_verified": "true"}));
        assert_eq!(verified_claim(&c, true), Some(true));
        assert_eq!(verified_claim(&c, false), Some(false));
        let c = map(json!({"email_verified": "false"}));
        assert_eq!(verified_claim(&c, true), Some(false));
        assert_eq!(verified_claim(&map(json!({})), true), None);
        assert_eq!(
            verified_claim(&map(json!({"email_verified": true})), false),
            Some(true)
        );
    }

    #[test]
    fn groups_by_name_or_path() {
        let c = map(json!({
            "groups": ["a", "b", 3, null],
            "realm_access": {"roles": ["admin"]},
            "https://example.com/groups": "solo",
        }));
        assert_eq!(
            groups_in(&c, "groups"),
            Some(vec!["a".into(), "b".into(), "3".into()])
        );
        assert_eq!(
            groups_in(&c, "realm_access.roles"),
            Some(vec!["admin".into()])
        );
        assert_eq!(
            groups_in(&c, "https://example.com/groups"),
            Some(vec!["solo".into()])
        );
        assert_eq!(groups_in(&c, "missing"), None);
    }
}
