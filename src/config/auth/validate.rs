//! `proxy.auth` checked and turned into [`AuthSettings`]: every problem
//! reported with its JSON path, none stopping at the first.

use std::time::Duration;

use url::Url;

use super::*;
use crate::config::Problem;
use crate::util::is_loopback_host;
use crate::util::password;

impl AuthConfig {
    pub(in crate::config) fn validate(
        self,
        base_url: Option<&Url>,
        problems: &mut Vec<Problem>,
    ) -> Option<AuthSettings> {
        let before = problems.len();
        if let Some(b) = base_url
            && b.scheme() != "https"
            && !b.host_str().is_some_and(is_loopback_host)
        {
            problems.push(Problem {
                path: "proxy.baseURL".into(),
                message: format!(
                    "must be an https URL when proxy.auth is set (tokens and sign-in cookies must not cross the network in clear); {b} is plain http to a non-loopback host. Put mcpgate behind a TLS-terminating proxy and set baseURL to its https URL"
                ),
            });
        }
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                path: format!("proxy.auth.{field}"),
                message,
            })
        };
        let callback = base_url.map(|b| {
            let mut u = b.clone();
            u.set_path(&format!(
                "{}/oauth/callback",
                b.path().trim_end_matches('/')
            ));
            u.to_string()
        });
        let mut check_redirect = |field: &str, given: &Option<String>| {
            if let (Some(given), Some(expected)) = (given, &callback)
                && given.trim_end_matches('/') != expected.trim_end_matches('/')
            {
                problem(
                    field,
                    format!(
                        "is {given:?} but mcpgate receives sign-ins at {expected:?}; register that URL at the identity provider and set it here (or remove this field)"
                    ),
                );
            }
        };
        let mut allow_all_known_users = false;
        let idp = match self.idp {
            IdpConfig::Local(local) => {
                let mut users = Vec::new();
                if local.users.is_empty() {
                    problem(
                        "idp.users",
                        "the local provider needs at least one user".into(),
                    );
                }
                for (i, u) in local.users.into_iter().enumerate() {
                    let email = u.email.trim().to_ascii_lowercase();
                    if !email.contains('@') {
                        problem(
                            &format!("idp.users[{i}].email"),
                            format!("{:?} is not an email address", u.email),
                        );
                    }
                    if !password::is_valid_hash(&u.password_hash) {
                        problem(
                            &format!("idp.users[{i}].passwordHash"),
                            "is not an argon2id hash; create one with `mcpgate hash-password`"
                                .into(),
                        );
                    }
                    users.push(LocalUser {
                        email,
                        password_hash: u.password_hash,
                        name: u.name,
                        groups: u.groups,
                    });
                }
                allow_all_known_users = true;
                IdpSettings::Local { users }
            }
            IdpConfig::Google(g) => {
                check_redirect("idp.redirectUri", &g.redirect_uri);
                IdpSettings::Google {
                    issuer: g
                        .issuer
                        .unwrap_or_else(|| "https://accounts.google.com".into()),
                    client_id: g.client_id,
                    client_secret: Secret::new(g.client_secret),
                }
            }
            IdpConfig::Oidc(o) => {
                check_redirect("idp.redirectUri", &o.redirect_uri);
                let issuer = o
                    .issuer
                    .trim_end_matches('/')
                    .trim_end_matches("/.well-known/openid-configuration")
                    .to_string();
                match Url::parse(&issuer) {
                    Ok(u)
                        if u.scheme() == "https" || u.host_str().is_some_and(is_loopback_host) => {}
                    _ => problem(
                        "idp.issuer",
                        format!("{:?} is not an https issuer URL", o.issuer),
                    ),
                }
                IdpSettings::Oidc {
                    issuer,
                    client_id: o.client_id,
                    client_secret: Secret::new(o.client_secret),
                    scopes: if o.scopes.is_empty() {
                        vec!["openid".into(), "email".into(), "profile".into()]
                    } else {
                        o.scopes
                    },
                    groups_claim: o.groups_claim,
                }
            }
            IdpConfig::Github(g) => {
                check_redirect("idp.redirectUri", &g.redirect_uri);
                IdpSettings::Github {
                    client_id: g.client_id,
                    client_secret: Secret::new(g.client_secret),
                    web_url: g
                        .web_url
                        .unwrap_or_else(|| "https://github.com".into())
                        .trim_end_matches('/')
                        .into(),
                    api_url: g
                        .api_url
                        .unwrap_or_else(|| "https://api.github.com".into())
                        .trim_end_matches('/')
                        .into(),
                    read_orgs: !self.allowed_orgs.is_empty(),
                }
            }
        };
        match &idp {
            IdpSettings::Google {
                client_id,
                client_secret,
                ..
            }
            | IdpSettings::Oidc {
                client_id,
                client_secret,
                ..
            }
            | IdpSettings::Github {
                client_id,
                client_secret,
                ..
            } => {
                if client_id.trim().is_empty() {
                    problem(
                        "idp.clientId",
                        "is empty; set the OAuth client id the identity provider gave you".into(),
                    );
                }
                if client_secret.expose().is_empty() {
                    problem("idp.clientSecret", "is empty; set the client secret the identity provider gave you (best as {\"$env\": \"VAR\"})".into());
                }
            }
            IdpSettings::Local { .. } => {}
        }
        let lower = |v: Vec<String>| {
            v.into_iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let policy = AccessPolicy {
            domains: lower(self.allowed_domains),
            emails: lower(self.allowed_emails),
            orgs: lower(self.allowed_orgs),
            groups: self.allowed_groups,
            allow_all_known_users,
        };
        if !policy.allow_all_known_users
            && policy.domains.is_empty()
            && policy.emails.is_empty()
            && policy.orgs.is_empty()
            && policy.groups.is_empty()
        {
            problem(
                "",
                format!(
                    "nobody may sign in: with the {} provider set allowedDomains, allowedEmails, allowedOrgs or allowedGroups (mcpgate denies by default)",
                    idp.kind()
                ),
            );
        }
        if !policy.orgs.is_empty() && !matches!(idp, IdpSettings::Github { .. }) {
            problem("allowedOrgs", "only applies to the github provider".into());
        }
        let mut clients = Vec::new();
        for (i, c) in self.clients.into_iter().enumerate() {
            if c.client_id.trim().is_empty() || c.client_id.len() > 200 {
                problem(
                    &format!("clients[{i}].clientId"),
                    "must be 1-200 characters".into(),
                );
            }
            if c.redirect_uris.is_empty() {
                problem(
                    &format!("clients[{i}].redirectUris"),
                    "needs at least one redirect URI".into(),
                );
            }
            for (j, r) in c.redirect_uris.iter().enumerate() {
                if let Err(e) = crate::oauth::redirect::RedirectUri::register(r) {
                    problem(
                        &format!("clients[{i}].redirectUris[{j}]"),
                        e.description.to_string(),
                    );
                }
            }
            if c.secret_is_weak() {
                problem(
                    &format!("clients[{i}].clientSecret"),
                    "must be at least 16 characters".into(),
                );
            }
            clients.push(StaticClient {
                client_id: c.client_id,
                secret: c.client_secret.map(Secret::new),
                redirect_uris: c.redirect_uris,
                name: c.name,
            });
        }
        let mut encryption_keys = Vec::new();
        let key_texts = self
            .encryption_key
            .iter()
            .map(|k| ("encryptionKey".to_string(), k))
            .chain(
                self.previous_encryption_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("previousEncryptionKeys[{i}]"), k)),
            );
        for (field, text) in key_texts {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()));
            match decoded
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            {
                Some(k) => encryption_keys.push(Secret32(k)),
                None => problem(
                    &field,
                    "must be 32 bytes in base64 (generate one with `openssl rand -base64 32`)"
                        .into(),
                ),
            }
        }
        if self.encryption_key.is_none() && !self.previous_encryption_keys.is_empty() {
            problem("encryptionKey", "is required when previousEncryptionKeys is set (it is the key new values are encrypted with)".into());
        }
        let d = |v: Option<DurationStr>, default: Duration| v.map_or(default, |d| d.0);
        const DAY: u64 = 24 * 3600;
        let settings = AuthSettings {
            idp,
            policy,
            token_ttl: d(self.token_ttl, Duration::from_secs(3600)),
            refresh_ttl: d(self.refresh_token_ttl, Duration::from_secs(30 * DAY)),
            refresh_grace: d(self.refresh_grace, Duration::from_secs(30)),
            login_ttl: d(self.login_ttl, Duration::from_secs(12 * 3600)),
            client_expiry: d(self.client_expiry, Duration::from_secs(90 * DAY)),
            registration_open: self.registration != Some(RegistrationMode::Closed),
            clients,
            require_resource: self.require_resource,
            storage: self.storage.unwrap_or_else(|| "sqlite:mcpgate.db".into()),
            cimd_enabled: self.client_metadata_documents.enabled,
            cimd_allow_private: self.client_metadata_documents.allow_private_networks,
            rate_token: self.rate_limits.token.unwrap_or(120),
            rate_register: self.rate_limits.register.unwrap_or(30),
            rate_login: self.rate_limits.login.unwrap_or(10),
            encryption_keys,
        };
        for (field, v) in [
            ("tokenTtl", settings.token_ttl),
            ("refreshTokenTtl", settings.refresh_ttl),
            ("loginTtl", settings.login_ttl),
            ("clientExpiry", settings.client_expiry),
        ] {
            if v.as_secs() < 1 {
                problems.push(Problem {
                    path: format!("proxy.auth.{field}"),
                    message: "must be at least one second".into(),
                });
            }
        }
        for (field, v) in [
            ("rateLimits.token", settings.rate_token),
            ("rateLimits.register", settings.rate_register),
            ("rateLimits.login", settings.rate_login),
        ] {
            if v == 0 {
                problems.push(Problem {
                    path: format!("proxy.auth.{field}"),
                    message: "must be at least 1 (requests per minute)".into(),
                });
            }
        }
        (problems.len() == before).then_some(settings)
    }
}

impl ClientConfig {
    fn secret_is_weak(&self) -> bool {
        self.client_secret.as_ref().is_some_and(|s| s.len() < 16)
    }
}
