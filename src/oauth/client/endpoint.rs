//! The https-except-loopback rule: where a URL that carries secrets (codes,
//! tokens, client secrets) or decides whose keys are trusted may use plain
//! http ([`PlainHttp`], [`check_endpoint`], [`parse_endpoint`]), and how such
//! a URL is shown in errors ([`shown`]: never its query or credentials). One
//! rule for every caller, so the authorization server's configuration checks
//! and the `connect` bridge cannot drift apart.

use url::Url;

use crate::util::is_loopback_url;

/// Where plain http is accepted for a URL that carries secrets or decides whom
/// to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// https only.
    Never,
    /// http to this machine too: nothing sent to loopback leaves the machine
    /// (fakes in tests, local development servers).
    Loopback,
    /// http anywhere: the user said the network is trusted (`--allow-http`).
    Anywhere,
}

impl PlainHttp {
    /// [`PlainHttp::Loopback`] when `allowed`, else [`PlainHttp::Never`].
    pub fn loopback_if(allowed: bool) -> PlainHttp {
        if allowed {
            PlainHttp::Loopback
        } else {
            PlainHttp::Never
        }
    }
}

/// Why an endpoint URL is not used. Names the URL as [`shown`], never its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{what} {text:?} is not a URL: {reason}")]
    NotUrl {
        what: String,
        text: String,
        reason: String,
    },
    /// `hint` says what to do instead; it differs by caller (a command line flag,
    /// a configuration rule).
    #[error(
        "{what} {url} is plain http{}, so secrets would travel unencrypted; {hint}",
        if *.loopback_allowed { " on another machine" } else { "" }
    )]
    PlainHttp {
        what: String,
        url: String,
        loopback_allowed: bool,
        hint: String,
    },
    #[error(
        "{what} {url} has the scheme {scheme:?}; only https{} supported",
        if *.loopback_allowed { " (and http on loopback) are" } else { " is" }
    )]
    Scheme {
        what: String,
        url: String,
        scheme: String,
        loopback_allowed: bool,
    },
    #[error("{what} {url} has no host")]
    NoHost { what: String, url: String },
    #[error("{what} must not carry credentials in the URL")]
    Credentials { what: String },
}

/// The one rule for URLs that carry secrets (codes, tokens, client secrets) or
/// decide whose keys are trusted: https, or plain http as `plain_http` allows.
/// `what` names the URL in the error ("the token endpoint"), `hint` says what
/// to do about a refused plain http URL.
pub fn check_endpoint(
    url: &Url,
    plain_http: PlainHttp,
    what: &str,
    hint: &str,
) -> Result<(), EndpointError> {
    let loopback_allowed = plain_http != PlainHttp::Never;
    match url.scheme() {
        "https" => Ok(()),
        "http" if plain_http == PlainHttp::Anywhere => Ok(()),
        "http" if loopback_allowed && is_loopback_url(url) => Ok(()),
        "http" => Err(EndpointError::PlainHttp {
            what: what.to_string(),
            url: shown(url),
            loopback_allowed,
            hint: hint.to_string(),
        }),
        other => Err(EndpointError::Scheme {
            what: what.to_string(),
            url: shown(url),
            scheme: other.to_string(),
            loopback_allowed,
        }),
    }
}

/// Parse an endpoint URL from configuration or metadata and apply
/// [`check_endpoint`]; it must also name a host and carry no credentials (a
/// secret in a URL ends up in logs).
pub fn parse_endpoint(
    text: &str,
    plain_http: PlainHttp,
    what: &str,
    hint: &str,
) -> Result<Url, EndpointError> {
    let url = Url::parse(text.trim()).map_err(|e| EndpointError::NotUrl {
        what: what.to_string(),
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    check_endpoint(&url, plain_http, what, hint)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost {
            what: what.to_string(),
            url: shown(&url),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials {
            what: what.to_string(),
        });
    }
    Ok(url)
}

/// A URL as shown in errors: without credentials, query or fragment, which is
/// where a misconfigured URL might carry something secret.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_support::{assert_no_secret, url};

    #[test]
    fn https_anywhere_plain_http_only_on_loopback() {
        let check = |u: &str, p| check_endpoint(&url(u), p, "the token endpoint", "use https");
        assert!(check("https://as.example/token", PlainHttp::Never).is_ok());
        assert!(check("https://as.example/token", PlainHttp::Loopback).is_ok());
        for u in [
            "http://127.0.0.1:8080/token",
            "http://[::1]/token",
            "http://localhost/token",
        ] {
            assert!(check(u, PlainHttp::Loopback).is_ok(), "{u}");
            assert!(check(u, PlainHttp::Never).is_err(), "{u}");
        }
        let err = check("http://as.example/token?x=1", PlainHttp::Loopback)
            .expect_err("plain http to another machine");
        let text = err.to_string();
        assert!(text.contains("http://as.example/token"), "{text}");
        assert!(!text.contains("x=1"), "{text}");
        assert!(text.contains("use https"), "{text}");
        assert!(check("http://as.example/token", PlainHttp::Anywhere).is_ok());
        assert!(check("ftp://as.example/token", PlainHttp::Anywhere).is_err());
    }

    #[test]
    fn parsed_endpoints_need_a_host_and_no_credentials() {
        let parse = |t: &str| parse_endpoint(t, PlainHttp::Loopback, "x", "hint");
        assert!(parse("https://as.example").is_ok());
        assert!(parse("not a url").is_err());
        let err = parse("https://u:client-secret-1@as.example").expect_err("credentials");
        assert_no_secret(&err.to_string());
    }
}
