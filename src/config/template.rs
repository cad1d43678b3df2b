//! Per-user values in a service's configuration: `{"$user": "email"}`,
//! `{"$user": "sub"}` and `{"$userToken": "Bearer {{token}}"}` (mcp-front's form).
//!
//! They are resolved when a person opens a session, not at load time. At load
//! time each reference becomes a placeholder inside the string it stands for
//! (a private-use character, U+E000, that no configuration text may contain and
//! that URL parsing keeps), so the backend
//! settings keep their plain `String` shape and [`render`] is the one place that
//! fills them in.

/// Stands for the signed-in person's email address.
pub const EMAIL: &str = "\u{E000}user.email\u{E000}";
/// Stands for the signed-in person's stable id (`<provider>:<subject>`).
pub const SUB: &str = "\u{E000}user.sub\u{E000}";
/// Stands for the person's token for this service (personal or upstream OAuth).
pub const TOKEN: &str = "\u{E000}user.token\u{E000}";

/// Whether configuration text holds the placeholder marker (refused in plain
/// strings, so a placeholder can only come from a reference).
pub fn has_marker(s: &str) -> bool {
    s.contains('\u{E000}')
}

pub fn uses_user(s: &str) -> bool {
    s.contains(EMAIL) || s.contains(SUB) || s.contains(TOKEN)
}

pub fn uses_token(s: &str) -> bool {
    s.contains(TOKEN)
}

/// The placeholder text for a `$user` reference.
pub fn user_field(field: &str) -> Option<&'static str> {
    match field {
        "email" => Some(EMAIL),
        "sub" | "id" => Some(SUB),
        _ => None,
    }
}

/// The placeholder text for a `$userToken` format (`{{token}}` marks the spot;
/// the whole value is the token when it has none).
pub fn user_token(format: &str) -> String {
    if format.contains("{{token}}") {
        format.replace("{{token}}", TOKEN)
    } else {
        TOKEN.to_string()
    }
}

/// One person's values.
#[derive(Clone, Copy)]
pub struct UserValues<'a> {
    pub email: &'a str,
    pub sub: &'a str,
    pub token: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this service needs the user's token, and none is set")]
pub struct MissingToken;

/// Fill in a configured string for one person.
pub fn render(s: &str, v: &UserValues<'_>) -> Result<String, MissingToken> {
    if !has_marker(s) {
        return Ok(s.to_string());
    }
    let mut out = s.replace(EMAIL, v.email).replace(SUB, v.sub);
    if out.contains(TOKEN) {
        out = out.replace(TOKEN, v.token.ok_or(MissingToken)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_user() {
        let v = UserValues {
            email: "a@x.com",
            sub: "google:1",
            token: Some("t0k"),
        };
        let s = format!("--user={EMAIL} --id={SUB}");
        assert_eq!(render(&s, &v).unwrap(), "--user=a@x.com --id=google:1");
        assert_eq!(
            render(&user_token("Bearer {{token}}"), &v).unwrap(),
            "Bearer t0k"
        );
        assert_eq!(render(&user_token("raw"), &v).unwrap(), "t0k");
        let none = UserValues { token: None, ..v };
        assert_eq!(
            render(&user_token("Bearer {{token}}"), &none),
            Err(MissingToken)
        );
        assert_eq!(render("plain", &none).unwrap(), "plain");
    }
}
