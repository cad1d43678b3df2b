//! The HTTP client for authorization servers ([`OAuthHttp`]): never follows
//! redirects, bounds what it reads, says timeouts in seconds, and names URLs
//! only as [`shown`]. [`Answer`] is a response read whole.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use super::endpoint::shown;
use super::error::{HttpError, TokenError};
use super::redact::error_chain;

/// How a request is sent, for callers that record their requests (connect's
/// `--trace-file`). A plain function, so that [`OAuthHttp`] stays `Clone`.
pub type SendFn = fn(
    reqwest::RequestBuilder,
) -> Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send>>;

/// The HTTP client for talking to authorization servers, with its limits.
#[derive(Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
    /// The client's total timeout, to say it in errors.
    timeout: Duration,
    /// The largest answer read; a broken or hostile endpoint must not make us
    /// buffer without end.
    max_body: usize,
    send: Option<SendFn>,
}

impl fmt::Debug for OAuthHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthHttp")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl OAuthHttp {
    /// A client that never follows redirects: a redirect from a token endpoint
    /// could carry the client secret and the code to another host, and an
    /// authorization server's endpoints are known, not found by hops.
    pub fn build(
        user_agent: &'static str,
        connect_timeout: Duration,
        timeout: Duration,
        max_body: usize,
    ) -> Result<OAuthHttp, TokenError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| TokenError::Setup(error_chain(&e)))?;
        Ok(OAuthHttp::with_client(client, timeout, max_body))
    }

    /// Use a client the caller built (it must not follow redirects, see
    /// [`OAuthHttp::build`]); `timeout` is its timeout, for error messages.
    pub fn with_client(client: reqwest::Client, timeout: Duration, max_body: usize) -> OAuthHttp {
        OAuthHttp {
            client,
            timeout,
            max_body,
            send: None,
        }
    }

    /// Send requests through `send` instead of `RequestBuilder::send`.
    pub fn sending_with(mut self, send: SendFn) -> OAuthHttp {
        self.send = Some(send);
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send and read the whole answer (up to the size limit). `url` is the
    /// request's, for errors.
    pub async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, HttpError> {
        let network = |e: reqwest::Error| HttpError::Network {
            url: shown(url),
            reason: self.network_reason(e),
        };
        let sent = match self.send {
            Some(send) => send(request).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(network)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(HttpError::TooLarge {
                    url: shown(url),
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    fn network_reason(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {} seconds", self.timeout.as_secs());
        }
        // Without the URL: the caller names it, and a URL may carry a query.
        error_chain(&e.without_url())
    }
}

/// An HTTP answer as read: status, content type, body (capped).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_json(&self) -> bool {
        let media = self
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media == "application/json" || media.ends_with("+json")
    }
}
