//! Sign-in through upstream identity providers, end to end through the real
//! binary: an in-process fake OpenID Connect provider (standing in for Google and
//! for any OIDC provider) and a fake GitHub. The access policy (domains, groups,
//! organisations) decides who gets a token; everyone else gets a 403 page.

#[path = "common/connect_bridge.rs"]
mod bridge;
mod common;
#[path = "common/fake_idp.rs"]
mod fake_idp;

use common::oauth::*;
use common::{Mcp, gateway, text_of};
use fake_idp::{FakeGithub, FakeGithubUser, FakeOidc, FakeUser};
use serde_json::{Value, json};

/// From /authorize through the provider and back to the gateway's callback.
/// Returns the callback's answer.
async fn through_provider(
    browser: &mut Browser,
    base: &str,
    client_id: &str,
    challenge: &str,
) -> reqwest::Response {
    let url = Authorize {
        base,
        client_id,
        redirect_uri: REDIRECT,
        challenge,
        resource: None,
        scope: None,
        state: "up",
    }
    .url();
    let resp = browser.get(&url).await;
    assert_eq!(resp.status(), 302);
    let at_provider = location(&resp);
    assert!(
        !at_provider.starts_with(base),
        "sent to the provider: {at_provider}"
    );
    let resp = browser.get(&at_provider).await;
    assert_eq!(resp.status(), 302, "the fake provider signs in at once");
    let callback = location(&resp);
    assert!(
        callback.starts_with(&format!("{base}/oauth/callback")),
        "{callback}"
    );
    browser.get(&callback).await
}

async fn code_to_tokens(base: &str, client_id: &str, back: &str, verifier: &str) -> Value {
    let code = query_param(back, "code").unwrap_or_else(|| panic!("a code in {back}"));
    let (status, body) = redeem(base, &code, verifier, client_id).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A refused sign-in: a page naming the account and the reason, which sends
/// the browser back to the client with `error` (and `state`, `iss`), so the
/// client stops waiting. Returns the page's text.
async fn refused_back_to_client(
    resp: reqwest::Response,
    base: &str,
    status: u16,
    error: &str,
    account: &str,
) -> String {
    assert_eq!(resp.status(), status);
    assert!(
        resp.headers().get("location").is_none(),
        "the page comes first"
    );
    let refresh = resp
        .headers()
        .get("refresh")
        .expect("the page goes on to the client by itself")
        .to_str()
        .unwrap()
        .to_string();
    let back = refresh
        .split_once("url=")
        .map(|(_, u)| u.to_string())
        .expect("a URL in Refresh");
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some(error),
        "{back}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("up"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(base));
    assert!(query_param(&back, "code").is_none());
    let description = query_param(&back, "error_description").expect("a description");
    assert!(!description.is_empty());
    let html = resp.text().await.unwrap();
    assert!(html.contains(account), "the page names the account: {html}");
    assert!(
        html.contains("Back to your application"),
        "and links back at once: {html}"
    );
    html
}

fn config(idp: Value, policy: Value) -> Value {
    let mut auth = json!({"idp": idp, "storage": "memory"});
    for (k, v) in policy.as_object().unwrap() {
        auth[k] = v.clone();
    }
    config_with(auth)
}

#[tokio::test]
async fn google_sign_in_with_an_allowed_workspace_domain() {
    let idp = FakeOidc::start(FakeUser::new("g-1", "alice@example.com").hd("example.com")).await;
    let gw = gateway(config(
        json!({"provider": "google", "clientId": FakeOidc::CLIENT_ID, "clientSecret": FakeOidc::CLIENT_SECRET, "issuer": idp.issuer()}),
        json!({"allowedDomains": ["example.com"]}),
    ))
    .await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    assert_eq!(resp.status(), 302);
    let consent = absolute(&base, &location(&resp));
    let back = approve(&mut browser, &base, &consent).await;
    let tokens = code_to_tokens(&base, &client, &back, &p.verifier).await;
    let mut mcp =
        Mcp::new(format!("{base}/a/mcp")).with_bearer(tokens["access_token"].as_str().unwrap());
    mcp.initialize().await;
    assert_eq!(
        text_of(&mcp.call("echo", json!({"text": "hi"})).await),
        "hi"
    );
    // The provider saw our callback and a PKCE challenge of ours (not the client's).
    let seen = idp.last_authorize();
    assert_eq!(
        seen.get("redirect_uri").map(String::as_str),
        Some(format!("{base}/oauth/callback").as_str())
    );
    assert_ne!(
        seen.get("code_challenge").map(String::as_str),
        Some(p.challenge.as_str())
    );
}

#[tokio::test]
async fn google_accounts_outside_the_domain_get_a_403_page_and_no_code() {
    // A personal account: the email's domain matches, but there is no verified `hd`.
    let idp = FakeOidc::start(FakeUser::new("g-2", "mallory@example.com")).await;
    let gw = gateway(config(
        json!({"provider": "google", "clientId": FakeOidc::CLIENT_ID, "clientSecret": FakeOidc::CLIENT_SECRET, "issuer": idp.issuer()}),
        json!({"allowedDomains": ["example.com"]}),
    ))
    .await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    let html =
        refused_back_to_client(resp, &base, 403, "access_denied", "mallory@example.com").await;
    assert!(html.contains("not in an allowed"), "{html}");
}

#[tokio::test]
async fn oidc_groups_decide_and_unverified_emails_are_refused() {
    let idp =
        FakeOidc::start(FakeUser::new("o-1", "carol@corp.example").groups(&["mcp-users"])).await;
    let gw = gateway(config(
        json!({"provider": "oidc", "issuer": idp.issuer(), "clientId": FakeOidc::CLIENT_ID, "clientSecret": FakeOidc::CLIENT_SECRET, "groupsClaim": "groups"}),
        json!({"allowedGroups": ["mcp-users"]}),
    ))
    .await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    assert_eq!(resp.status(), 302, "in the allowed group");

    // Not in the group.
    idp.set_user(FakeUser::new("o-2", "dave@corp.example").groups(&["others"]));
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    refused_back_to_client(resp, &base, 403, "access_denied", "dave@corp.example").await;

    // In the group, but the provider has not verified the email.
    idp.set_user(
        FakeUser::new("o-3", "erin@corp.example")
            .groups(&["mcp-users"])
            .verified(false),
    );
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    let html = refused_back_to_client(resp, &base, 403, "access_denied", "erin@corp.example").await;
    assert!(html.to_lowercase().contains("verif"), "{html}");

    // A forged ID token (signed with another key) is refused.
    idp.set_user(FakeUser::new("o-4", "frank@corp.example").groups(&["mcp-users"]));
    idp.knobs(|k| k.wrong_key = true);
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    // Not the person's fault: the client hears `server_error`.
    refused_back_to_client(resp, &base, 502, "server_error", "ID token").await;
}

#[tokio::test]
async fn github_organisations_decide() {
    let gh = FakeGithub::start().await;
    let gw = gateway(config(
        json!({"provider": "github", "clientId": FakeGithub::CLIENT_ID, "clientSecret": FakeGithub::CLIENT_SECRET, "webUrl": gh.base(), "apiUrl": gh.base()}),
        json!({"allowedOrgs": ["acme-corp"]}),
    ))
    .await;
    let base = gw.url.clone();
    let client = public_client(&base).await;
    let p = pkce();
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    assert_eq!(resp.status(), 302, "member of Acme-Corp");
    let back = approve(&mut browser, &base, &absolute(&base, &location(&resp))).await;
    let tokens = code_to_tokens(&base, &client, &back, &p.verifier).await;
    assert_eq!(
        mcp_status(&format!("{base}/b/mcp"), tokens["access_token"].as_str())
            .await
            .status(),
        200
    );

    gh.set_user(FakeGithubUser {
        id: 7,
        login: "outsider".into(),
        orgs: vec!["elsewhere".into()],
        ..FakeGithubUser::default()
    });
    let mut browser = Browser::default();
    let resp = through_provider(&mut browser, &base, &client, &p.challenge).await;
    refused_back_to_client(resp, &base, 403, "access_denied", "is signed in, but").await;
}

#[tokio::test]
async fn the_providers_own_client_id_is_not_a_client_here() {
    let idp = FakeOidc::start(FakeUser::new("g-1", "alice@example.com").hd("example.com")).await;
    let gw = gateway(config(
        json!({"provider": "google", "clientId": FakeOidc::CLIENT_ID, "clientSecret": FakeOidc::CLIENT_SECRET, "issuer": idp.issuer()}),
        json!({"allowedDomains": ["example.com"]}),
    ))
    .await;
    let base = gw.url.clone();
    let p = pkce();
    let url = Authorize {
        base: &base,
        client_id: FakeOidc::CLIENT_ID,
        redirect_uri: "https://attacker.example/cb",
        challenge: &p.challenge,
        resource: None,
        scope: None,
        state: "s",
    }
    .url();
    let resp = Browser::default().get(&url).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

/// A real MCP client (`mcpgate connect`, a stdio bridge) whose person is
/// refused at sign-in hears of it at once, with the reason, instead of
/// waiting for its own timeout.
#[tokio::test]
async fn a_refused_person_s_client_is_told_at_once() {
    let idp = FakeOidc::start(FakeUser::new("o-9", "dave@corp.example").groups(&["others"])).await;
    let gw = gateway(config(
        json!({"provider": "oidc", "issuer": idp.issuer(), "clientId": FakeOidc::CLIENT_ID, "clientSecret": FakeOidc::CLIENT_SECRET, "groupsClaim": "groups"}),
        json!({"allowedGroups": ["mcp-users"]}),
    ))
    .await;
    let home = bridge::Home::new();
    let browser = home.following_browser();
    let started = std::time::Instant::now();
    let mut b = bridge::Bridge::start(&home, &browser, &format!("{}/a/mcp", gw.url), &[]).await;
    // The sign-in starts with the client's initialize; its answer is the refusal.
    let answer = b
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "refused", "version": "0"}}),
        )
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "told at once, not after a timeout: {:?}",
        started.elapsed()
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("access_denied"), "{answer}");
    assert!(
        message.contains("dave@corp.example"),
        "the reason names the account: {answer}"
    );
    assert_eq!(home.browser_opened(), 1);
    let (_, stderr) = b.finish().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}
