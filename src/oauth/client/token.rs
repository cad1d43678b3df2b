//! The token endpoint (RFC 6749 §3.2, §4.1.3, §6) and the device authorization
//! endpoint (RFC 8628): who the client is ([`Credentials`], [`AuthMethod`] with
//! the Basic-then-body fallback), what is redeemed ([`Grant`]), the typed
//! answers ([`TokenResponse`], [`DeviceAuthorization`]), and the requests
//! ([`request_token`], [`request_device_authorization`]).

use std::fmt;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

use super::endpoint::shown;
use super::error::{ResponseProblem, TokenError};
use super::http::{Answer, OAuthHttp};
use super::redact::provider_text;
use super::secret::{REDACTED, Secret};

/// The grant type of RFC 8628 (device authorization).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the client authenticates at the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: `client_id` in the form, no secret.
    None,
    /// HTTP Basic (`client_secret_basic`, the OAuth default).
    Basic,
    /// In the form body (`client_secret_post`; GitHub's way).
    Post,
    /// Basic first (RFC 6749 requires servers to take it; some take nothing
    /// else), then once more in the body if the server refuses the client
    /// (`invalid_client`, or a bare 401): some providers document only that.
    /// A refused client authentication does not use up the code.
    BasicThenPost,
}

impl AuthMethod {
    /// The method of a name as in `token_endpoint_auth_method`; unknown names
    /// (and `none`) are a public client.
    pub fn from_name(name: &str) -> AuthMethod {
        match name {
            "client_secret_basic" => AuthMethod::Basic,
            "client_secret_post" => AuthMethod::Post,
            _ => AuthMethod::None,
        }
    }
}

/// Who the client is at the token endpoint. `Debug` redacts the secret.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    /// Without a secret, any method is [`AuthMethod::None`].
    pub client_secret: Option<&'a str>,
    pub method: AuthMethod,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.map(|_| REDACTED))
            .field("method", &self.method)
            .finish()
    }
}

/// What is redeemed at the token endpoint.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    /// RFC 6749 §4.1.3 with RFC 7636's verifier.
    AuthorizationCode {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    /// RFC 6749 §6.
    RefreshToken { refresh_token: &'a str },
    /// RFC 8628 §3.4.
    DeviceCode { device_code: &'a str },
}

impl Grant<'_> {
    /// For messages: "authorization code grant", "refresh token grant", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode { .. } => "authorization code grant",
            Grant::RefreshToken { .. } => "refresh token grant",
            Grant::DeviceCode { .. } => "device code grant",
        }
    }

    fn secrets(&self) -> Vec<&str> {
        match self {
            Grant::AuthorizationCode { code, verifier, .. } => vec![code, verifier],
            Grant::RefreshToken { refresh_token } => vec![refresh_token],
            Grant::DeviceCode { device_code } => vec![device_code],
        }
    }

    fn append_to(&self, form: &mut url::form_urlencoded::Serializer<'_, String>) {
        match self {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                verifier,
            } => {
                form.append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("code_verifier", verifier);
            }
            Grant::RefreshToken { refresh_token } => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh_token);
            }
            Grant::DeviceCode { device_code } => {
                form.append_pair("grant_type", DEVICE_CODE_GRANT)
                    .append_pair("device_code", device_code);
            }
        }
    }
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::AuthorizationCode { redirect_uri, .. } => f
                .debug_struct("AuthorizationCode")
                .field("redirect_uri", redirect_uri)
                .finish_non_exhaustive(),
            Grant::RefreshToken { .. } => f.debug_struct("RefreshToken").finish_non_exhaustive(),
            Grant::DeviceCode { .. } => f.debug_struct("DeviceCode").finish_non_exhaustive(),
        }
    }
}

/// One request to a token endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// Checked by the caller with [`check_endpoint`](super::check_endpoint) or
    /// [`parse_endpoint`](super::parse_endpoint).
    pub endpoint: &'a Url,
    pub client: Credentials<'a>,
    pub grant: Grant<'a>,
    /// RFC 8707: the resource the token is for (MCP asks for it).
    pub resource: Option<&'a str>,
}

/// A successful token response (RFC 6749 §5.1). `Debug` shows no token.
#[derive(Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: Option<String>,
    /// Seconds, as the server said (RFC 6749 says a number; some send a string).
    pub expires_in: Option<u64>,
    /// `None` also when the server sent an empty one, which cannot be used.
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    /// OpenID Connect.
    pub id_token: Option<Secret>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .finish()
    }
}

/// A device authorization response (RFC 8628 §3.2). `Debug` hides the device
/// code; the user code is meant to be shown.
#[derive(Clone)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: Option<String>,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Option<u64>,
    pub interval: Option<u64>,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &self.device_code)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Redeem a grant at a token endpoint, authenticating the client as
/// `request.client.method` says (with its fallback for
/// [`AuthMethod::BasicThenPost`]).
pub async fn request_token(
    http: &OAuthHttp,
    request: &TokenRequest<'_>,
) -> Result<TokenResponse, TokenError> {
    let what = request.grant.describe();
    let mut secrets = request.grant.secrets();
    secrets.extend(request.client.client_secret);
    let post = |method: AuthMethod| {
        let grant = request.grant;
        let resource = request.resource;
        let secrets = &secrets;
        async move {
            let answer = post_form(http, request.endpoint, &request.client, method, |form| {
                grant.append_to(form);
                if let Some(r) = resource {
                    form.append_pair("resource", r);
                }
            })
            .await?;
            token_response(request.endpoint, what, &answer, secrets)
        }
    };
    match request.client.method {
        AuthMethod::BasicThenPost => match post(AuthMethod::Basic).await {
            Err(e) if e.is_invalid_client() => post(AuthMethod::Post).await,
            other => other,
        },
        method => post(method).await,
    }
}

/// Start a device authorization (RFC 8628 §3.1). The endpoint authenticates
/// clients like the token endpoint does.
pub async fn request_device_authorization(
    http: &OAuthHttp,
    endpoint: &Url,
    client: &Credentials<'_>,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Result<DeviceAuthorization, TokenError> {
    const WHAT: &str = "device authorization request";
    let secrets: Vec<&str> = client.client_secret.into_iter().collect();
    let method = match client.method {
        AuthMethod::BasicThenPost => AuthMethod::Basic,
        m => m,
    };
    let answer = post_form(http, endpoint, client, method, |form| {
        if let Some(r) = resource {
            form.append_pair("resource", r);
        }
        if let Some(s) = scope {
            form.append_pair("scope", s);
        }
    })
    .await?;
    let json = oauth_answer(endpoint, WHAT, &answer, &secrets)?;
    let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(device_code), Some(user_code)) = (text("device_code"), text("user_code")) else {
        return Err(TokenError::Invalid {
            url: shown(endpoint),
            what: WHAT,
            problem: ResponseProblem::NoDeviceCode,
        });
    };
    Ok(DeviceAuthorization {
        device_code: Secret::new(device_code),
        user_code,
        verification_uri: text("verification_uri"),
        verification_uri_complete: text("verification_uri_complete"),
        expires_in: seconds(json.get("expires_in")),
        interval: seconds(json.get("interval")),
    })
}

/// POST a form with client authentication; `fill` adds the request's own fields.
async fn post_form(
    http: &OAuthHttp,
    endpoint: &Url,
    client: &Credentials<'_>,
    method: AuthMethod,
    fill: impl FnOnce(&mut url::form_urlencoded::Serializer<'_, String>),
) -> Result<Answer, TokenError> {
    let method = if client.client_secret.is_some() {
        method
    } else {
        AuthMethod::None
    };
    // Built in a block: the serializer is not `Send` and must not live across
    // the await below.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        fill(&mut form);
        match (method, client.client_secret) {
            (AuthMethod::Post, Some(secret)) => {
                form.append_pair("client_id", client.client_id)
                    .append_pair("client_secret", secret);
            }
            (AuthMethod::Basic | AuthMethod::BasicThenPost, Some(_)) => {}
            _ => {
                form.append_pair("client_id", client.client_id);
            }
        }
        form.finish()
    };
    let mut request = http
        .client()
        .post(endpoint.clone())
        // GitHub answers form-encoded unless asked for JSON.
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body);
    if let (AuthMethod::Basic | AuthMethod::BasicThenPost, Some(secret)) =
        (method, client.client_secret)
    {
        // RFC 6749 §2.3.1: form-encode both before Basic, so that a ':' in the
        // id cannot shift where the secret begins.
        request = request.basic_auth(form_encode(client.client_id), Some(form_encode(secret)));
    }
    Ok(http.send(endpoint, request).await?)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The JSON object of a successful OAuth answer, or the error it carries.
fn oauth_answer(
    endpoint: &Url,
    what: &'static str,
    answer: &Answer,
    secrets: &[&str],
) -> Result<Map<String, Value>, TokenError> {
    let json: Option<Map<String, Value>> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
    };
    if let Some(error) = field("error") {
        return Err(TokenError::Refused {
            url: shown(endpoint),
            what,
            status: answer.status,
            error: provider_text(error, secrets).unwrap_or_else(|| "unknown_error".into()),
            description: field("error_description").and_then(|d| provider_text(d, secrets)),
        });
    }
    if !answer.status.is_success() {
        return Err(TokenError::Status {
            url: shown(endpoint),
            what,
            status: answer.status,
        });
    }
    json.ok_or_else(|| TokenError::Invalid {
        url: shown(endpoint),
        what,
        problem: ResponseProblem::NotJson,
    })
}

fn token_response(
    endpoint: &Url,
    what: &'static str,
    answer: &Answer,
    secrets: &[&str],
) -> Result<TokenResponse, TokenError> {
    let json = oauth_answer(endpoint, what, answer, secrets)?;
    let text = |name: &str| {
        json.get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let Some(access_token) = text("access_token") else {
        return Err(TokenError::Invalid {
            url: shown(endpoint),
            what,
            problem: ResponseProblem::NoAccessToken,
        });
    };
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        token_type: text("token_type"),
        expires_in: seconds(json.get("expires_in")),
        refresh_token: text("refresh_token").map(Secret::new),
        scope: text("scope"),
        id_token: text("id_token").map(Secret::new),
    })
}

/// A number of seconds: a JSON number by the RFCs, but a few servers send a string.
fn seconds(value: Option<&Value>) -> Option<u64> {
    let v = value?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    use super::super::redact::provider_error_text;
    use super::super::test_support::{assert_no_secret, url};

    #[test]
    fn token_responses_never_print_tokens() {
        let answer = Answer {
            status: StatusCode::OK,
            content_type: "application/json".into(),
            body: serde_json::json!({
                "access_token": "access-secret-4",
                "token_type": "Bearer",
                "expires_in": "3600",
                "refresh_token": "refresh-secret-5",
                "id_token": "id-secret-6",
                "scope": "a b",
            })
            .to_string()
            .into_bytes(),
        };
        let t = token_response(&url("https://as.example/token"), "x", &answer, &[])
            .expect("a token response");
        assert_eq!(t.access_token.expose(), "access-secret-4");
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.scope.as_deref(), Some("a b"));
        assert_no_secret(&format!("{t:?}"));
        let device = DeviceAuthorization {
            device_code: Secret::new("code-secret-2"),
            user_code: "WDJB".into(),
            verification_uri: None,
            verification_uri_complete: None,
            expires_in: None,
            interval: None,
        };
        assert_no_secret(&format!("{device:?}"));
    }

    #[test]
    fn requests_and_errors_never_print_secrets() {
        let endpoint = url("https://as.example/token");
        let request = TokenRequest {
            endpoint: &endpoint,
            client: Credentials {
                client_id: "id",
                client_secret: Some("client-secret-1"),
                method: AuthMethod::BasicThenPost,
            },
            grant: Grant::AuthorizationCode {
                code: "code-secret-2",
                redirect_uri: "http://127.0.0.1/cb",
                verifier: "verifier-secret-3",
            },
            resource: None,
        };
        assert_no_secret(&format!("{request:?}"));

        // A server that quotes what it was sent.
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            content_type: "application/json".into(),
            body: serde_json::json!({
                "error": "invalid_grant",
                "error_description": "code code-secret-2 with verifier-secret-3 for client-secret-1",
            })
            .to_string()
            .into_bytes(),
        };
        let mut secrets = request.grant.secrets();
        secrets.push("client-secret-1");
        let err = token_response(&endpoint, "x", &answer, &secrets).expect_err("refused");
        assert_eq!(err.oauth_error(), Some("invalid_grant"));
        assert_no_secret(&err.to_string());
        assert_no_secret(&format!("{err:?}"));
        assert_no_secret(&provider_error_text(&answer.body, &secrets));
    }

    #[test]
    fn bare_401_counts_as_invalid_client_and_200_errors_are_errors() {
        let endpoint = url("https://as.example/token");
        let bare = Answer {
            status: StatusCode::UNAUTHORIZED,
            content_type: String::new(),
            body: Vec::new(),
        };
        let err = token_response(&endpoint, "x", &bare, &[]).expect_err("401");
        assert!(err.is_invalid_client());
        assert_eq!(err.oauth_error(), None);
        let github = Answer {
            status: StatusCode::OK,
            content_type: "application/json".into(),
            body: br#"{"error":"bad_verification_code"}"#.to_vec(),
        };
        let err = token_response(&endpoint, "x", &github, &[]).expect_err("error with 200");
        assert_eq!(err.oauth_error(), Some("bad_verification_code"));
    }
}
