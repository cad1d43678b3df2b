//! How the gateway talks to identity providers: endpoint URLs (https, except
//! loopback in tests), one HTTP client ([`OAuthHttp`]: no redirects, bounded
//! answers, time limits; also the adapter `openidconnect` needs), and the code
//! exchange both providers use.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use url::Url;

use super::error::IdpError;
use crate::oauth::client::{
    self as oauth, Answer, AuthMethod, Credentials, Grant, OAuthHttp, TokenError, TokenRequest,
    TokenResponse,
};

/// How long one request to a provider may take. A login is interactive: a
/// provider that has not answered in this time is better reported than waited on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a provider (discovery documents and JWKS are a
/// few kB); a broken or hostile endpoint must not make us buffer without end.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What to do about a refused plain http endpoint, in errors.
const HTTPS_HINT: &str = "use https (plain http is only for tests on loopback)";

/// Parse an endpoint URL a provider or the configuration gave, refusing plain
/// http except on loopback when `allow_loopback_http`: every one of them
/// carries a secret (client secret, code, token) or decides whose keys are
/// trusted.
pub fn endpoint_url(
    what: &str,
    text: &str,
    allow_loopback_http: bool,
) -> Result<Url, oauth::EndpointError> {
    oauth::parse_endpoint(
        text,
        oauth::PlainHttp::loopback_if(allow_loopback_http),
        what,
        HTTPS_HINT,
    )
}

/// The HTTP client for talking to providers ([`OAuthHttp`]: never follows
/// redirects, bounded answers).
#[derive(Clone)]
pub struct UpstreamHttp {
    /// Building can fail only if TLS cannot be set up; that is reported at the
    /// first request instead of panicking in an infallible constructor.
    http: Result<OAuthHttp, TokenError>,
}

impl UpstreamHttp {
    pub fn new() -> UpstreamHttp {
        UpstreamHttp {
            http: OAuthHttp::build(
                concat!("mcpgate/", env!("CARGO_PKG_VERSION")),
                CONNECT_TIMEOUT,
                REQUEST_TIMEOUT,
                MAX_RESPONSE_BYTES,
            ),
        }
    }

    pub fn http(&self) -> Result<&OAuthHttp, IdpError> {
        self.http
            .as_ref()
            .map_err(|e| IdpError::Config(e.to_string()))
    }

    pub fn client(&self) -> Result<&reqwest::Client, IdpError> {
        self.http().map(OAuthHttp::client)
    }

    /// Send and read the whole answer (up to [`MAX_RESPONSE_BYTES`]).
    pub async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, IdpError> {
        Ok(self.http()?.send(url, request).await?)
    }

    pub async fn get_json(
        &self,
        url: &Url,
        bearer: Option<&str>,
        accept: &'static str,
    ) -> Result<Answer, IdpError> {
        let mut request = self
            .client()?
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static(accept));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(url, request).await
    }

    /// The adapter `openidconnect` needs (it has no HTTP client of its own when
    /// built without default features).
    async fn execute(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, UpstreamHttpError> {
        let client = self.client().map_err(UpstreamHttpError::Idp)?;
        let (parts, body) = request.into_parts();
        let url = Url::parse(&parts.uri.to_string()).map_err(UpstreamHttpError::BadUrl)?;
        let builder = client
            .request(parts.method, url.clone())
            .headers(parts.headers)
            .body(body);
        let answer = self.send(&url, builder).await.map_err(|e| match e {
            // The caller names the URL already.
            IdpError::Network { reason, .. } => UpstreamHttpError::Unreachable(reason),
            other => UpstreamHttpError::Idp(other),
        })?;
        let mut response = openidconnect::http::Response::builder().status(answer.status);
        if !answer.content_type.is_empty() {
            response = response.header(CONTENT_TYPE, answer.content_type);
        }
        response
            .body(answer.body)
            .map_err(UpstreamHttpError::Response)
    }
}

/// Why `openidconnect` got no answer through [`UpstreamHttp`].
#[derive(Debug, thiserror::Error)]
pub enum UpstreamHttpError {
    #[error("bad URL: {0}")]
    BadUrl(url::ParseError),
    #[error("could not reach it: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Response(openidconnect::http::Error),
    #[error("{0}")]
    Idp(IdpError),
}

impl<'c> openidconnect::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = UpstreamHttpError;
    type Future = Pin<
        Box<
            dyn Future<Output = Result<openidconnect::HttpResponse, UpstreamHttpError>> + Send + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// Redeem an authorization code (RFC 6749 §4.1.3 with RFC 7636's verifier),
/// the client authenticating with `method` and its secret.
pub async fn exchange_code(
    http: &UpstreamHttp,
    token_url: &Url,
    client: Credentials<'_>,
    code: &str,
    redirect_uri: &str,
    pkce_verifier: &str,
) -> Result<TokenResponse, IdpError> {
    let request = TokenRequest {
        endpoint: token_url,
        client,
        grant: Grant::AuthorizationCode {
            code,
            redirect_uri,
            verifier: pkce_verifier,
        },
        resource: None,
    };
    Ok(oauth::request_token(http.http()?, &request).await?)
}

/// The confidential client a provider knows us as.
pub fn credentials<'a>(
    client_id: &'a str,
    client_secret: &'a str,
    method: AuthMethod,
) -> Credentials<'a> {
    Credentials {
        client_id,
        client_secret: Some(client_secret),
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_need_https_except_loopback_in_tests() {
        assert!(endpoint_url("x", "https://idp.example", false).is_ok());
        assert!(endpoint_url("x", "http://idp.example", true).is_err());
        assert!(endpoint_url("x", "http://127.0.0.1:8080", false).is_err());
        assert!(endpoint_url("x", "http://127.0.0.1:8080", true).is_ok());
        assert!(endpoint_url("x", "http://[::1]:8080", true).is_ok());
        assert!(endpoint_url("x", "https://u:p@idp.example", false).is_err());
        assert!(endpoint_url("x", "ftp://idp.example", true).is_err());
    }
}
