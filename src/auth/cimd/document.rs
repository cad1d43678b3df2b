//! What a fetched client metadata document must say, and what the gateway keeps
//! of it: the document names itself (`client_id` equal to the URL, compared as
//! strings, so no site can serve a copy of another client's document with its
//! own redirect URIs), holds no secret (it is public), uses only `none` client
//! authentication, and lists redirect URIs that pass the registration rules.
//! Display fields are cleaned because the consent page shows them.

use serde_json::{Map, Value};
use url::Url;

use super::{ClientMetadata, MAX_URL_LEN, short};
use crate::oauth::redirect::RedirectUri;

/// Shown on the consent page; longer names only serve to push the real
/// information off the screen.
const MAX_CLIENT_NAME_CHARS: usize = 100;
/// More than any real client needs; each one is parsed and matched later.
const MAX_REDIRECT_URIS: usize = 32;

/// Why a fetched document is refused. The message follows
/// `client metadata document <url>: `; client-supplied text in it is quoted
/// and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentRefused {
    #[error("is not valid JSON ({0})")]
    NotJson(String),
    #[error("is not a JSON object")]
    NotObject,
    #[error("states client_id {}, which is not the URL it was fetched from", short(.0, 80))]
    OtherClientId(String),
    #[error("client_id must be a string")]
    ClientIdNotString,
    #[error("has no client_id")]
    NoClientId,
    #[error("must not contain {0}: a public document cannot hold a secret")]
    Secret(&'static str),
    #[error(
        "token_endpoint_auth_method {} is not allowed: a public document cannot hold a secret",
        short(.0, 40)
    )]
    SecretAuthMethod(String),
    #[error("token_endpoint_auth_method {} is not supported; only \"none\" is", short(.0, 40))]
    UnsupportedAuthMethod(String),
    #[error("token_endpoint_auth_method must be a string")]
    AuthMethodNotString,
    #[error("redirect_uris is empty")]
    NoRedirectUris,
    #[error("has more than {MAX_REDIRECT_URIS} redirect_uris")]
    TooManyRedirectUris,
    #[error("redirect_uris[{index}]: {why}")]
    BadRedirectUri { index: usize, why: String },
    #[error("redirect_uris[{0}] is not a string")]
    RedirectUriNotString(usize),
    #[error("redirect_uris must be an array of strings")]
    RedirectUrisNotArray,
    #[error("has no redirect_uris")]
    MissingRedirectUris,
}

/// Check the document against the draft and our rules.
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientMetadata, DocumentRefused> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DocumentRefused::NotJson(e.to_string()))?;
    let Value::Object(doc) = value else {
        return Err(DocumentRefused::NotObject);
    };

    match doc.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        Some(Value::String(id)) => {
            return Err(DocumentRefused::OtherClientId(id.clone()));
        }
        Some(_) => return Err(DocumentRefused::ClientIdNotString),
        None => return Err(DocumentRefused::NoClientId),
    }

    for field in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(field) {
            return Err(DocumentRefused::Secret(field));
        }
    }
    let token_endpoint_auth_method = match doc.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(m)) if m == "none" => m.clone(),
        Some(Value::String(m)) if m.starts_with("client_secret") => {
            return Err(DocumentRefused::SecretAuthMethod(m.clone()));
        }
        Some(Value::String(m)) => {
            return Err(DocumentRefused::UnsupportedAuthMethod(m.clone()));
        }
        Some(_) => return Err(DocumentRefused::AuthMethodNotString),
    };

    let redirect_uris = match doc.get("redirect_uris") {
        Some(Value::Array(uris)) if uris.is_empty() => {
            return Err(DocumentRefused::NoRedirectUris);
        }
        Some(Value::Array(uris)) if uris.len() > MAX_REDIRECT_URIS => {
            return Err(DocumentRefused::TooManyRedirectUris);
        }
        Some(Value::Array(uris)) => uris
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => {
                    RedirectUri::register(s).map_err(|e| DocumentRefused::BadRedirectUri {
                        index: i,
                        why: e.description.into_owned(),
                    })
                }
                _ => Err(DocumentRefused::RedirectUriNotString(i)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(DocumentRefused::RedirectUrisNotArray),
        None => return Err(DocumentRefused::MissingRedirectUris),
    };

    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name: display_name(&doc),
        client_uri: display_url(&doc, "client_uri"),
        logo_uri: display_url(&doc, "logo_uri"),
        redirect_uris,
        token_endpoint_auth_method,
    })
}

/// The name as the consent page may show it. Characters that reorder or hide
/// text (controls, bidi overrides and isolates) could make one name look like
/// another, so they are dropped.
fn display_name(doc: &Map<String, Value>) -> Option<String> {
    let Some(Value::String(name)) = doc.get("client_name") else {
        return None;
    };
    let cleaned: String = name
        .chars()
        .filter(|&c| {
            !c.is_control()
                && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut out: String = trimmed.chars().take(MAX_CLIENT_NAME_CHARS).collect();
    if out.len() < trimmed.len() {
        out = out.trim_end().to_owned();
        out.push('…');
    }
    Some(out)
}

/// A link or image URL for the consent page: kept only if it is plain `https`
/// (no `javascript:`, no `data:`, no mixed content). A bad one is dropped rather
/// than refusing the client: it is decoration, not authorization.
fn display_url(doc: &Map<String, Value>, field: &str) -> Option<String> {
    let Some(Value::String(text)) = doc.get(field) else {
        return None;
    };
    if text.len() > MAX_URL_LEN {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let ok = url.scheme() == "https"
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none();
    ok.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "https://app.example.com/client.json";

    fn parse(v: Value) -> Result<ClientMetadata, DocumentRefused> {
        parse_document(ID, v.to_string().as_bytes())
    }

    #[test]
    fn a_minimal_document_is_a_public_client() {
        let meta = parse(json!({"client_id": ID, "redirect_uris": ["https://app.example.com/cb"]}))
            .expect("valid");
        assert_eq!(meta.client_id, ID);
        assert_eq!(meta.token_endpoint_auth_method, "none");
        assert_eq!(meta.client_name, None);
    }

    #[test]
    fn each_rule_has_its_reason() {
        let uris = json!(["https://app.example.com/cb"]);
        let cases = [
            (json!([1]), DocumentRefused::NotObject),
            (json!({"redirect_uris": uris}), DocumentRefused::NoClientId),
            (
                json!({"client_id": 1, "redirect_uris": uris}),
                DocumentRefused::ClientIdNotString,
            ),
            (
                json!({"client_id": ID, "client_secret": "x", "redirect_uris": uris}),
                DocumentRefused::Secret("client_secret"),
            ),
            (
                json!({"client_id": ID, "token_endpoint_auth_method": "private_key_jwt", "redirect_uris": uris}),
                DocumentRefused::UnsupportedAuthMethod("private_key_jwt".into()),
            ),
            (
                json!({"client_id": ID, "redirect_uris": []}),
                DocumentRefused::NoRedirectUris,
            ),
            (
                json!({"client_id": ID, "redirect_uris": [7]}),
                DocumentRefused::RedirectUriNotString(0),
            ),
            (
                json!({"client_id": ID, "redirect_uris": "https://app.example.com/cb"}),
                DocumentRefused::RedirectUrisNotArray,
            ),
            (
                json!({"client_id": ID}),
                DocumentRefused::MissingRedirectUris,
            ),
        ];
        for (doc, why) in cases {
            assert_eq!(parse(doc.clone()).unwrap_err(), why, "{doc}");
        }
        let many: Vec<String> = (0..=MAX_REDIRECT_URIS)
            .map(|i| format!("https://app.example.com/{i}"))
            .collect();
        assert_eq!(
            parse(json!({"client_id": ID, "redirect_uris": many})).unwrap_err(),
            DocumentRefused::TooManyRedirectUris
        );
        assert!(matches!(
            parse_document(ID, b"{").unwrap_err(),
            DocumentRefused::NotJson(_)
        ));
    }

    #[test]
    fn client_text_in_messages_is_quoted_and_cut() {
        let e = DocumentRefused::OtherClientId("x".repeat(200));
        let msg = e.to_string();
        assert!(msg.starts_with("states client_id \"xxx"), "{msg}");
        assert!(msg.contains("…\", which is not the URL"), "{msg}");
        assert_eq!(
            DocumentRefused::SecretAuthMethod("client_secret_basic".into()).to_string(),
            "token_endpoint_auth_method \"client_secret_basic\" is not allowed: a public document cannot hold a secret"
        );
    }

    #[test]
    fn display_fields_are_cleaned() {
        let doc = |v: Value| v.as_object().cloned().expect("object");
        let long = "n".repeat(300);
        let d = doc(json!({"client_name": long}));
        let name = display_name(&d).expect("name");
        assert_eq!(name.chars().count(), MAX_CLIENT_NAME_CHARS + 1);
        assert!(name.ends_with('…'));
        assert_eq!(display_name(&doc(json!({"client_name": " \n\t "}))), None);
        assert_eq!(display_name(&doc(json!({"client_name": 7}))), None);
        assert_eq!(
            display_url(
                &doc(json!({"logo_uri": "http://app.example.com/l.png"})),
                "logo_uri"
            ),
            None
        );
        assert_eq!(
            display_url(
                &doc(json!({"logo_uri": "data:image/png;base64,AAAA"})),
                "logo_uri"
            ),
            None
        );
    }
}
