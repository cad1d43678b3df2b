//! A person's values in a service's settings: `{"$user": "email"}`,
//! `{"$userToken": ...}` and their placeholders in URLs, filled in just before
//! the backend starts.

use crate::caller::{Caller, PersonalToken};
use crate::config::BackendSpec;

/// Whose values fill a service's settings: the caller, and their token for
/// that service when it needs one.
#[derive(Clone, Copy)]
pub struct Person<'a> {
    pub caller: &'a Caller,
    pub token: Option<&'a PersonalToken>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("this service needs a signed-in user (per-user values in {0})")]
    NoUser(&'static str),
    #[error("{0}")]
    Template(String),
    #[error("the per-user URL is not valid: {0}")]
    Url(String),
}

/// The service's backend settings with this person's values filled in.
pub fn render_spec(
    spec: &BackendSpec,
    user: Option<&Person<'_>>,
) -> Result<BackendSpec, ValuesError> {
    use crate::config::template::{self, UserValues};
    let missing = || ValuesError::NoUser("its configuration");
    let values = user.map(|u| UserValues {
        email: &u.caller.email,
        sub: u.caller.user.as_str(),
        token: u.token.map(|t| t.value.as_str()),
    });
    let r = |s: &String| -> Result<String, ValuesError> {
        if !template::has_marker(s) {
            return Ok(s.clone());
        }
        let v = values.as_ref().ok_or_else(missing)?;
        template::render(s, v).map_err(|e| ValuesError::Template(e.to_string()))
    };
    let map = |m: &std::collections::BTreeMap<String, String>| -> Result<std::collections::BTreeMap<String, String>, ValuesError> {
        m.iter().map(|(k, v)| Ok((k.clone(), r(v)?))).collect()
    };
    Ok(match spec {
        BackendSpec::Stdio {
            command,
            args,
            env,
            cwd,
        } => BackendSpec::Stdio {
            command: command.clone(),
            args: args.iter().map(r).collect::<Result<_, _>>()?,
            env: map(env)?,
            cwd: cwd.clone(),
        },
        BackendSpec::StreamableHttp { url, headers } => BackendSpec::StreamableHttp {
            url: render_url(url, user)?,
            headers: map(headers)?,
        },
        BackendSpec::Sse { url, headers } => BackendSpec::Sse {
            url: render_url(url, user)?,
            headers: map(headers)?,
        },
    })
}

fn render_url(url: &url::Url, user: Option<&Person<'_>>) -> Result<url::Url, ValuesError> {
    use crate::config::template::{self, UserValues};
    // Placeholders are percent-encoded inside a parsed URL.
    let text = url.as_str().replace("%EE%80%80", "\u{E000}");
    if !text.contains('\u{E000}') {
        return Ok(url.clone());
    }
    let u = user.ok_or(ValuesError::NoUser("its URL"))?;
    // Each value is percent-encoded, so a `+`, `/` or `..` in a token or an
    // email stays data and never changes the URL's structure.
    let enc = |v: &str| -> String {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let (email, sub, token) = (
        enc(&u.caller.email),
        enc(u.caller.user.as_str()),
        u.token.map(|t| enc(&t.value)),
    );
    let values = UserValues {
        email: &email,
        sub: &sub,
        token: token.as_deref(),
    };
    let rendered =
        template::render(&text, &values).map_err(|e| ValuesError::Template(e.to_string()))?;
    url::Url::parse(&rendered).map_err(|e| ValuesError::Url(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_values_in_urls_are_encoded() {
        let url = url::Url::parse(&format!(
            "https://api.example.com/u/{}?key={}",
            crate::config::template::EMAIL,
            crate::config::template::TOKEN
        ))
        .unwrap();
        let mut caller = Caller::person("a+b@x.com", vec![]);
        caller.user = crate::caller::UserId::new("local:a");
        let token = PersonalToken {
            value: "ab+c/d../e&f=g".into(),
            expires_at: None,
        };
        let person = Person {
            caller: &caller,
            token: Some(&token),
        };
        let out = render_url(&url, Some(&person)).unwrap();
        assert_eq!(out.path(), "/u/a%2Bb%40x%2Ecom");
        let key: Vec<(String, String)> = out
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(key, vec![("key".to_string(), "ab+c/d../e&f=g".to_string())]);
    }
}
