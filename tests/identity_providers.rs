//! The upstream identity providers against in-process fakes: a whole login
//! (start -> the provider's redirect -> finish) for OpenID Connect, Google and
//! GitHub, and every way an ID token or an answer can be wrong.

#[path = "common/fake_idp.rs"]
mod fake_idp;

use fake_idp::{FakeGithub, FakeGithubEmail, FakeGithubUser, FakeOidc, FakeUser};
use mcpgate::auth::idp::*;
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const STATE: &str = "mgs_state-of-this-login";

fn oidc_settings(idp: &FakeOidc) -> OidcSettings {
    OidcSettings {
        issuer_url: idp.issuer(),
        client_id: FakeOidc::CLIENT_ID.into(),
        client_secret: FakeOidc::CLIENT_SECRET.into(),
        scopes: Vec::new(),
        groups_claim: Some("groups".into()),
        google_hosted_domain: None,
        allow_insecure_http: true,
    }
}

fn github_settings(gh: &FakeGithub, read_orgs: bool) -> GithubSettings {
    let base = gh.base();
    GithubSettings {
        client_id: FakeGithub::CLIENT_ID.into(),
        client_secret: FakeGithub::CLIENT_SECRET.into(),
        authorize_url: format!("{base}/login/oauth/authorize"),
        token_url: format!("{base}/login/oauth/access_token"),
        api_url: base,
        read_orgs,
    }
}

/// What a browser does: follow the provider's URL, which the fakes answer with
/// a redirect straight back to the callback.
async fn browse(url: &Url) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(url.clone())
        .send()
        .await
        .expect("provider answers");
    assert_eq!(response.status(), 302, "the provider redirects back");
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_string();
    let back = Url::parse(&location).expect("Location is a URL");
    assert!(location.starts_with(REDIRECT), "{location}");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {location}"))
    };
    assert_eq!(param("state"), STATE);
    param("code")
}

async fn login(provider: &Provider) -> Result<Identity, IdpError> {
    let (url, pending) = provider.start(REDIRECT, STATE).expect("start");
    let code = browse(&url).await;
    provider.finish(REDIRECT, &code, pending).await
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ------------------------------------------------------------ OpenID Connect

#[tokio::test]
async fn oidc_login_yields_the_verified_identity() {
    let idp = FakeOidc::start(
        FakeUser::new("user-123", "Alice@Example.COM")
            .name("Alice Liddell")
            .hd("example.com")
            .groups(&["eng", "Ops"]),
    )
    .await;
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    assert_eq!(provider.kind(), "oidc");
    assert_eq!(provider.display_name(), "your identity provider");

    let (url, pending) = provider.start(REDIRECT, STATE).expect("start");
    assert!(
        url.as_str()
            .starts_with(&format!("{}/authorize?", idp.issuer()))
    );
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("openid email profile")
    );
    assert_eq!(query(&url, "hd"), None, "hd is Google's");
    let nonce = query(&url, "nonce").expect("a nonce");
    assert!(nonce.len() >= 43);

    let code = browse(&url).await;
    let identity = provider
        .finish(REDIRECT, &code, pending)
        .await
        .expect("login");
    assert_eq!(
        identity,
        Identity {
            provider: "oidc".into(),
            subject: "user-123".into(),
            email: "alice@example.com".into(),
            name: Some("Alice Liddell".into()),
            // Not Google: an `hd` claim means nothing here.
            domain: None,
            groups: vec!["eng".into(), "Ops".into()],
            orgs: vec![],
        }
    );
    assert_eq!(idp.last_authorize().get("nonce"), Some(&nonce));
    assert_eq!(idp.last_client_auth(), Some("basic"));
    assert_eq!(idp.hits("/userinfo"), 0, "the ID token had everything");
    assert_eq!(idp.hits("/jwks"), 1, "keys fetched once, at discovery");

    // The keys are kept: a second login fetches nothing but the token.
    login(&provider).await.expect("second login");
    assert_eq!(idp.hits("/jwks"), 1);
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn discovery_url_is_accepted_as_the_issuer() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let mut settings = oidc_settings(&idp);
    settings.issuer_url = format!("{}/.well-known/openid-configuration", idp.issuer());
    let provider = Provider::oidc(settings).await.expect("discovery");
    login(&provider).await.expect("login");
}

#[tokio::test]
async fn google_login_reports_the_hosted_domain() {
    let idp = FakeOidc::start(
        FakeUser::new("10769150350006150715113082367", "Bob@Example.com")
            .hd("Example.com")
            .verified("true"),
    )
    .await;
    let mut settings = oidc_settings(&idp);
    settings.groups_claim = None;
    settings.google_hosted_domain = Some("example.com".into());
    let provider = Provider::google(settings).await.expect("discovery");
    assert_eq!(provider.kind(), "google");
    assert_eq!(provider.display_name(), "Google");

    let (url, _) = provider.start(REDIRECT, STATE).expect("start");
    assert_eq!(query(&url, "hd").as_deref(), Some("example.com"));

    let identity = login(&provider).await.expect("login");
    assert_eq!(identity.provider, "google");
    assert_eq!(identity.email, "bob@example.com");
    assert_eq!(identity.domain.as_deref(), Some("example.com"));
    assert!(identity.groups.is_empty());
}

#[tokio::test]
async fn google_domain_is_never_derived_from_the_email() {
    let idp = FakeOidc::start(FakeUser::new("g1", "someone@example.com")).await;
    let provider = Provider::google(oidc_settings(&idp))
        .await
        .expect("discovery");
    let identity = login(&provider).await.expect("login");
    assert_eq!(identity.email, "someone@example.com");
    assert_eq!(identity.domain, None);
}

#[tokio::test]
async fn string_email_verified_is_accepted_from_google_only() {
    let idp = FakeOidc::start(FakeUser::new("s1", "s@example.com").verified("true")).await;
    let google = Provider::google(oidc_settings(&idp)).await.expect("google");
    login(&google).await.expect("Google's string form");
    let oidc = Provider::oidc(oidc_settings(&idp)).await.expect("oidc");
    assert!(matches!(
        login(&oidc).await,
        Err(IdpError::EmailNotVerified { .. })
    ));
}

#[tokio::test]
async fn unverified_email_is_refused() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com").verified(false)).await;
    for provider in [
        Provider::oidc(oidc_settings(&idp)).await.expect("oidc"),
        Provider::google(oidc_settings(&idp)).await.expect("google"),
    ] {
        let err = login(&provider).await.expect_err("unverified");
        assert!(matches!(err, IdpError::EmailNotVerified { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the identity provider has not verified the email address u@example.com"
        );
    }
    // Absent is not verified either (and userinfo does not say otherwise).
    idp.set_user(FakeUser::new("u", "u@example.com").verified(serde_json::Value::Null));
    let provider = Provider::oidc(oidc_settings(&idp)).await.expect("oidc");
    assert!(matches!(
        login(&provider).await,
        Err(IdpError::EmailNotVerified { .. })
    ));
}

/// Each way an ID token can be wrong, refused for that reason.
#[tokio::test]
async fn bad_id_tokens_are_refused() {
    type Case = (&'static str, fn(&mut fake_idp::Knobs), IdTokenProblem);
    let cases: [Case; 9] = [
        (
            "wrong key",
            |k| k.wrong_key = true,
            IdTokenProblem::Signature,
        ),
        (
            "unknown kid",
            |k| k.unknown_kid = true,
            IdTokenProblem::UnknownKey,
        ),
        (
            "HS256 with the client secret",
            |k| k.hs256 = true,
            IdTokenProblem::Algorithm("HS256".into()),
        ),
        (
            "wrong audience",
            |k| k.wrong_audience = true,
            IdTokenProblem::Audience,
        ),
        (
            "wrong issuer",
            |k| k.wrong_issuer = true,
            IdTokenProblem::Issuer,
        ),
        (
            "wrong nonce",
            |k| k.wrong_nonce = true,
            IdTokenProblem::Nonce,
        ),
        ("expired", |k| k.expired = true, IdTokenProblem::Expired),
        (
            "several audiences, no azp",
            |k| k.extra_audience_without_azp = true,
            IdTokenProblem::AuthorizedParty,
        ),
        (
            "no ID token",
            |k| k.omit_id_token = true,
            IdTokenProblem::Missing,
        ),
    ];
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    login(&provider).await.expect("a good login first");
    for (what, knob, expected) in cases {
        idp.knobs(|k| *k = fake_idp::Knobs::default());
        idp.knobs(knob);
        match login(&provider).await {
            Err(IdpError::InvalidIdToken(problem)) => assert_eq!(problem, expected, "{what}"),
            other => panic!("{what}: expected InvalidIdToken({expected:?}), got {other:?}"),
        }
    }
    idp.knobs(|k| *k = fake_idp::Knobs::default());
    login(&provider).await.expect("good again");
}

#[tokio::test]
async fn unknown_key_triggers_one_refresh_and_rotation_is_followed() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    assert_eq!(idp.hits("/jwks"), 1);

    idp.rotate_key();
    login(&provider).await.expect("the new key is fetched");
    assert_eq!(idp.hits("/jwks"), 2);
    login(&provider).await.expect("and kept");
    assert_eq!(idp.hits("/jwks"), 2);

    idp.knobs(|k| k.unknown_kid = true);
    assert!(login(&provider).await.is_err());
    assert_eq!(idp.hits("/jwks"), 3, "one refresh per unknown key, no more");
}

#[tokio::test]
async fn userinfo_fills_in_what_the_id_token_lacks() {
    let idp = FakeOidc::start(
        FakeUser::new("u7", "Carol@Example.com")
            .name("Carol")
            .groups(&["admins"]),
    )
    .await;
    idp.knobs(|k| k.claims_only_in_userinfo = true);
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    let identity = login(&provider).await.expect("login");
    assert_eq!(identity.email, "carol@example.com");
    assert_eq!(identity.groups, vec!["admins".to_string()]);
    assert_eq!(idp.hits("/userinfo"), 1);

    // Userinfo about someone else is not believed.
    idp.knobs(|k| k.userinfo_other_sub = true);
    let err = login(&provider).await.expect_err("sub mismatch");
    assert!(matches!(err, IdpError::InvalidResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("sub"), "{err}");
}

#[tokio::test]
async fn client_secret_post_is_used_when_basic_is_not_offered() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    idp.knobs(|k| k.post_auth_only = true);
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    login(&provider).await.expect("login");
    assert_eq!(idp.last_client_auth(), Some("post"));
}

#[tokio::test]
async fn the_pkce_verifier_is_checked() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let provider = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    let (url, pending) = provider.start(REDIRECT, STATE).expect("start");
    let code = browse(&url).await;

    // A pending login from another start (another verifier) cannot redeem this code.
    let (_, other) = provider.start(REDIRECT, STATE).expect("start");
    let mut tampered = serde_json::to_value(&pending).expect("serialize");
    tampered["pkce_verifier"] =
        serde_json::to_value(&other).expect("serialize")["pkce_verifier"].clone();
    let tampered: PendingLogin = serde_json::from_value(tampered).expect("deserialize");

    let err = provider
        .finish(REDIRECT, &code, tampered)
        .await
        .expect_err("wrong verifier");
    match &err {
        IdpError::ProviderRefused { error, .. } => assert_eq!(error, "invalid_grant"),
        other => panic!("expected ProviderRefused, got {other:?}"),
    }
    assert!(!err.to_string().contains(&code), "no code in {err}");
    assert!(!format!("{err:?}").contains(&code));

    // The code was spent by the failed attempt: single use.
    let err = provider
        .finish(REDIRECT, &code, pending)
        .await
        .expect_err("code reused");
    assert!(matches!(err, IdpError::ProviderRefused { .. }), "{err:?}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_provider() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let mut settings = oidc_settings(&idp);
    settings.client_secret = "not-the-secret".into();
    let provider = Provider::oidc(settings).await.expect("discovery");
    match login(&provider).await {
        Err(IdpError::ProviderRefused { error, .. }) => assert_eq!(error, "invalid_client"),
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pending_login_only_finishes_at_its_own_provider() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let gh = FakeGithub::start().await;
    let oidc = Provider::oidc(oidc_settings(&idp))
        .await
        .expect("discovery");
    let github = Provider::github(github_settings(&gh, false));
    let (_, pending) = github.start(REDIRECT, STATE).expect("start");
    assert_eq!(pending.provider(), "github");
    assert!(matches!(
        oidc.finish(REDIRECT, "some-code", pending).await,
        Err(IdpError::WrongProvider { .. })
    ));
    assert_eq!(idp.hits("/token"), 0);
}

#[tokio::test]
async fn discovery_errors_say_what_failed_and_where() {
    // Something that is not an OpenID Connect provider.
    let gh = FakeGithub::start().await;
    let mut settings = OidcSettings::new(gh.base(), "id", "secret");
    settings.allow_insecure_http = true;
    let err = Provider::oidc(settings).await.expect_err("not a provider");
    let text = err.to_string();
    assert!(matches!(err, IdpError::Discovery { .. }), "{err:?}");
    assert!(
        text.contains(&format!("{}/.well-known/openid-configuration", gh.base())),
        "{text}"
    );
    assert!(text.contains("404"), "{text}");
    assert!(
        text.contains("issuer URL of an OpenID Connect provider"),
        "{text}"
    );

    // The issuer must match the document's exactly.
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let mut settings = oidc_settings(&idp);
    settings.issuer_url = idp.issuer().replace("127.0.0.1", "localhost");
    let err = Provider::oidc(settings).await.expect_err("issuer mismatch");
    assert!(err.to_string().contains("issuer"), "{err}");

    // Plain http is for tests on loopback only, and only when allowed.
    let mut settings = oidc_settings(&idp);
    settings.allow_insecure_http = false;
    let err = Provider::oidc(settings).await.expect_err("http");
    assert!(err.to_string().contains("https"), "{err}");
    let settings = OidcSettings {
        allow_insecure_http: true,
        ..OidcSettings::new("http://idp.example", "id", "secret")
    };
    assert!(Provider::oidc(settings).await.is_err());

    // Nobody there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut settings = OidcSettings::new(format!("http://{closed}"), "id", "secret");
    settings.allow_insecure_http = true;
    let err = Provider::oidc(settings).await.expect_err("unreachable");
    assert!(matches!(err, IdpError::Discovery { .. }), "{err:?}");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
}

// ------------------------------------------------------------ GitHub

#[tokio::test]
async fn github_login_yields_the_primary_verified_email_and_orgs() {
    let gh = FakeGithub::start().await;
    let provider = Provider::github(github_settings(&gh, true));
    assert_eq!(provider.kind(), "github");
    assert_eq!(provider.display_name(), "GitHub");

    let (url, pending) = provider.start(REDIRECT, STATE).expect("start");
    assert_eq!(query(&url, "scope").as_deref(), Some("user:email read:org"));
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&url, "nonce"), None);
    let code = browse(&url).await;
    let identity = provider
        .finish(REDIRECT, &code, pending)
        .await
        .expect("login");
    assert_eq!(
        identity,
        Identity {
            provider: "github".into(),
            subject: "4242".into(),
            email: "octocat@example.com".into(),
            name: Some("The Octocat".into()),
            domain: None,
            groups: vec![],
            orgs: vec!["acme-corp".into(), "open-source".into()],
        }
    );
    assert_eq!(gh.hits("/user/orgs"), 1);
}

#[tokio::test]
async fn github_without_read_orgs_does_not_ask_for_them() {
    let gh = FakeGithub::start().await;
    gh.set_user(FakeGithubUser {
        name: None,
        ..FakeGithubUser::default()
    });
    let provider = Provider::github(github_settings(&gh, false));
    let (url, _) = provider.start(REDIRECT, STATE).expect("start");
    assert_eq!(query(&url, "scope").as_deref(), Some("user:email"));
    let identity = login(&provider).await.expect("login");
    assert!(identity.orgs.is_empty());
    assert_eq!(
        identity.name.as_deref(),
        Some("octocat"),
        "login stands in for a name"
    );
    assert_eq!(gh.hits("/user/orgs"), 0);
}

#[tokio::test]
async fn github_needs_a_verified_primary_email() {
    let gh = FakeGithub::start().await;
    let provider = Provider::github(github_settings(&gh, false));
    // A verified address exists, but the primary one is not verified.
    gh.set_user(FakeGithubUser {
        emails: vec![
            FakeGithubEmail {
                email: "primary@example.com".into(),
                primary: true,
                verified: false,
            },
            FakeGithubEmail {
                email: "other@example.com".into(),
                primary: false,
                verified: true,
            },
        ],
        ..FakeGithubUser::default()
    });
    assert!(matches!(
        login(&provider).await,
        Err(IdpError::EmailNotVerified { .. })
    ));
    gh.set_user(FakeGithubUser {
        emails: vec![],
        ..FakeGithubUser::default()
    });
    assert!(matches!(login(&provider).await, Err(IdpError::NoEmail)));
}

#[tokio::test]
async fn github_checks_the_pkce_verifier_and_reports_its_error_code() {
    let gh = FakeGithub::start().await;
    let provider = Provider::github(github_settings(&gh, false));
    let (url, pending) = provider.start(REDIRECT, STATE).expect("start");
    let code = browse(&url).await;
    let (_, other) = provider.start(REDIRECT, STATE).expect("start");
    let err = provider
        .finish(REDIRECT, &code, other)
        .await
        .expect_err("wrong verifier");
    match &err {
        IdpError::ProviderRefused { error, .. } => assert_eq!(error, "bad_verification_code"),
        other => panic!("expected ProviderRefused, got {other:?}"),
    }
    assert!(!err.to_string().contains(&code), "{err}");
    drop(pending);

    // A wrong secret too.
    let mut settings = github_settings(&gh, false);
    settings.client_secret = "wrong".into();
    let provider = Provider::github(settings);
    match login(&provider).await {
        Err(IdpError::ProviderRefused { error, .. }) => {
            assert_eq!(error, "incorrect_client_credentials")
        }
        other => panic!("expected ProviderRefused, got {other:?}"),
    }
}

// ------------------------------------------------------------ secrets

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let idp = FakeOidc::start(FakeUser::new("u", "u@example.com")).await;
    let gh = FakeGithub::start().await;
    let oidc_settings = oidc_settings(&idp);
    let github_settings = github_settings(&gh, true);
    assert!(!format!("{oidc_settings:?}").contains(FakeOidc::CLIENT_SECRET));
    assert!(!format!("{github_settings:?}").contains(FakeGithub::CLIENT_SECRET));
    assert!(format!("{oidc_settings:?}").contains(FakeOidc::CLIENT_ID));

    let providers = [
        Provider::oidc(oidc_settings.clone()).await.expect("oidc"),
        Provider::google(oidc_settings).await.expect("google"),
        Provider::github(github_settings),
    ];
    for provider in &providers {
        let shown = format!("{provider:?} {provider:#?}");
        assert!(!shown.contains(FakeOidc::CLIENT_SECRET), "{shown}");
        assert!(!shown.contains(FakeGithub::CLIENT_SECRET), "{shown}");

        let (_, pending) = provider.start(REDIRECT, STATE).expect("start");
        let stored = serde_json::to_value(&pending).expect("serialize");
        let shown = format!("{pending:?} {pending:#?}");
        for field in ["nonce", "pkce_verifier"] {
            if let Some(secret) = stored[field].as_str() {
                assert!(!shown.contains(secret), "{field} in {shown}");
            }
        }
        assert!(stored["pkce_verifier"].as_str().is_some());
    }
}
