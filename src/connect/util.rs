//! Small pieces shared by the bridge: `env:VAR` values, one-line JSON, the
//! `WWW-Authenticate` challenge, URL rules.

use url::Url;

use crate::oauth::client::{EndpointError, PlainHttp, check_endpoint};

/// A flag value that may name an environment variable (`env:VAR`), so secrets
/// need not appear in a client's config file or in `ps`.
pub fn resolve_value(value: &str, flag: &str) -> Result<String, UnsetVar> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| UnsetVar {
            flag: flag.to_string(),
            var: var.to_string(),
        }),
        None => Ok(value.to_string()),
    }
}

/// A flag's `env:VAR` names a variable that is not set. Names the flag and the
/// variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{flag} refers to the environment variable {var}, which is not set; export it or pass the value directly"
)]
pub struct UnsetVar {
    pub flag: String,
    pub var: String,
}

/// Drop the insignificant whitespace of a JSON text, byte for byte otherwise.
///
/// stdout is newline-delimited, so a pretty-printed answer must become one line;
/// re-serializing through `serde_json::Value` would reorder keys and round numbers.
pub fn compact(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

/// The parameters of a `Bearer` challenge (RFC 6750 section 3, RFC 9728 section 5.1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub error: Option<String>,
    pub scope: Option<String>,
    pub resource_metadata: Option<String>,
}

/// Parse the `Bearer` challenge out of a `WWW-Authenticate` value, which may hold
/// several challenges (`Basic realm="x", Bearer scope="a b", error="..."`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let bytes = header.as_bytes();
    let mut i = 0;
    let mut in_bearer = false;
    let mut seen_bearer = false;
    let mut out = Challenge::default();
    let skip = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes[*i], b' ' | b'\t' | b',') {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let token = &header[start..i];
        let mut j = i;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' {
            // An auth-param; token68 values (`abc==`) of other schemes land here too.
            i = j + 1;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            let value = if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().unwrap_or(' ');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let vs = i;
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
                header[vs..i].trim().to_string()
            };
            if in_bearer {
                match token.to_ascii_lowercase().as_str() {
                    "error" => out.error = Some(value),
                    "scope" => out.scope = Some(value),
                    "resource_metadata" => out.resource_metadata = Some(value),
                    _ => {}
                }
            }
        } else {
            in_bearer = token.eq_ignore_ascii_case("bearer");
            seen_bearer |= in_bearer;
        }
    }
    seen_bearer.then_some(out)
}

/// Tokens and codes must not travel in clear text over a network: https, or
/// plain http on loopback, or anywhere with `--allow-http` (the rule is
/// `oauth::client`'s; this is the bridge's flag and its hint).
pub fn check_secure(url: &Url, allow_http: bool, what: &str) -> Result<(), EndpointError> {
    let plain_http = if allow_http {
        PlainHttp::Anywhere
    } else {
        PlainHttp::Loopback
    };
    check_endpoint(
        url,
        plain_http,
        what,
        "use https, or pass --allow-http if this network is trusted",
    )
}

/// Union of two space-separated scope lists, first-seen order.
pub fn scope_union(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for s in a
        .into_iter()
        .chain(b)
        .flat_map(|s| s.split_ascii_whitespace())
    {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// Whether every scope of `wanted` is in `have`.
pub fn scopes_cover(have: Option<&str>, wanted: Option<&str>) -> bool {
    let have: Vec<&str> = have.unwrap_or("").split_ascii_whitespace().collect();
    wanted
        .unwrap_or("")
        .split_ascii_whitespace()
        .all(|s| have.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings() {
        let raw = b"{\n  \"a\" : \"x y\\\" z\",\n \"b\": [1, 2]\n}";
        assert_eq!(compact(raw), br#"{"a":"x y\" z","b":[1,2]}"#.to_vec());
    }

    #[test]
    fn challenge_with_other_schemes() {
        let c = parse_challenge(
            r#"Basic realm="x", Bearer error="insufficient_scope", scope="a b", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp""#,
        )
        .expect("bearer");
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://h/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(parse_challenge("Basic realm=\"x\""), None);
        assert_eq!(parse_challenge("Bearer"), Some(Challenge::default()));
    }

    #[test]
    fn scopes() {
        assert_eq!(
            scope_union(Some("a b"), Some("b c")).as_deref(),
            Some("a b c")
        );
        assert!(scopes_cover(Some("a b c"), Some("c a")));
        assert!(!scopes_cover(Some("a"), Some("b")));
        assert!(scopes_cover(None, None));
    }

    #[test]
    fn http_only_on_loopback() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(check_secure(&u("http://127.0.0.1:3/mcp"), false, "server").is_ok());
        assert!(check_secure(&u("http://localhost/mcp"), false, "server").is_ok());
        assert!(check_secure(&u("http://[::1]/mcp"), false, "server").is_ok());
        let err = check_secure(&u("http://example.com/mcp"), false, "server").expect_err("http");
        assert!(err.to_string().contains("--allow-http"), "{err}");
        assert!(check_secure(&u("http://example.com/mcp"), true, "server").is_ok());
    }
}
