//! Refusals at the token endpoint and the resource server: guessing stops
//! early, a failed redemption is not mistaken for a replay, and every refusal
//! leaves a log line (bounded, and without the secret that was refused).

mod common;

use common::oauth::*;
use common::*;

/// The JSON log lines of the gateway so far.
fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_line(lines: &[serde_json::Value], message: &str) -> bool {
    lines.iter().any(|l| l["message"].as_str() == Some(message))
}

/// A code for `client_id`, through the real sign-in and consent pages.
async fn code_for(base: &str, client_id: &str, p: &Pkce) -> String {
    let mut browser = Browser::default();
    let url = authorize_url(base, client_id, &p.challenge);
    let back = sign_in_and_consent(&mut browser, base, &url, "alice@example.com", "pw-alice").await;
    query_param(&back, "code").unwrap_or_else(|| panic!("a code in {back}"))
}

#[tokio::test]
async fn guessing_codes_stops_within_a_few_tries() {
    let (gw, log) = gateway_logged(config_with(local_auth("memory"))).await;
    let base = gw.url.clone();
    let client_id = public_client(&base).await;
    let mut first_429 = None;
    let mut guesses = Vec::new();
    for i in 0..60 {
        let guess = format!("mcpgate_code_{}", mcpgate::util::random_id());
        let (status, body) = token(
            &base,
            &[
                ("grant_type", "authorization_code"),
                ("code", &guess),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce().verifier),
                ("client_id", &client_id),
            ],
        )
        .await;
        guesses.push(guess);
        if status == 429 {
            first_429 = Some(i + 1);
            break;
        }
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    let first = first_429.expect("guessing was never refused with 429");
    assert!(first <= 11, "the first 429 came at request {first}");
    // Another client from the same address is refused too: the count is per
    // IP as well as per client.
    let other = public_client(&base).await;
    let (status, _) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
            ("client_id", &other),
        ],
    )
    .await;
    assert_eq!(status, 429);

    let lines = log_lines(&log);
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "token request refused")
        .collect();
    assert_eq!(refused.len(), first - 1, "one audit line per refused grant");
    assert!(refused.iter().all(|l| l["target"] == "audit"
        && l["client_id"] == client_id.as_str()
        && l["ip"] == "127.0.0.1"));
    assert!(
        lines
            .iter()
            .filter(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("rate limit reached")))
            .count()
            >= 1,
        "the 429 left a line"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    for g in &guesses {
        assert!(!text.contains(g.as_str()), "a guessed code is in the log");
    }
}

#[tokio::test]
async fn a_busy_clients_successes_are_not_counted_as_failures() {
    let (gw, _log) = gateway_logged(config_with(local_auth("memory"))).await;
    let base = gw.url.clone();
    let t = tokens_for(&base, "alice@example.com", "pw-alice", None).await;
    // A few failures of its own...
    for _ in 0..5 {
        let (status, _) = token(
            &base,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "not-a-token"),
                ("client_id", &t.client_id),
            ],
        )
        .await;
        assert_eq!(status, 400);
    }
    // ...and many successful refreshes after them: none refused.
    let mut current = t.refresh.clone();
    for i in 0..25 {
        let (status, body) = refresh(&base, &current, &t.client_id).await;
        assert_eq!(status, 200, "refresh {i}: {body}");
        current = body["refresh_token"].as_str().expect("refresh").to_string();
    }
}

#[tokio::test]
async fn a_failed_redemption_is_not_a_replay() {
    let (gw, log) = gateway_logged(config_with(local_auth("memory"))).await;
    let base = gw.url.clone();
    let client_id = public_client(&base).await;

    // Wrong verifier first: the code is used up, nothing is issued.
    let p = pkce();
    let code = code_for(&base, &client_id, &p).await;
    let form = |verifier: &str| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.clone()),
            ("redirect_uri".to_string(), REDIRECT.to_string()),
            ("code_verifier".to_string(), verifier.to_string()),
            ("client_id".to_string(), client_id.clone()),
        ]
    };
    let as_refs = |f: &Vec<(String, String)>| -> Vec<(String, String)> { f.clone() };
    let wrong = as_refs(&form(&pkce().verifier));
    let wrong: Vec<(&str, &str)> = wrong
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body) = token(&base, &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("code_verifier")),
        "{body}"
    );
    let right = form(&p.verifier);
    let right: Vec<(&str, &str)> = right
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body) = token(&base, &right).await;
    assert_eq!(status, 400, "a used code stays used: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("its redemption failed")),
        "{body}"
    );
    let lines = log_lines(&log);
    assert!(has_line(
        &lines,
        "an authorization code was presented again after a failed redemption"
    ));
    assert!(
        !has_line(
            &lines,
            "authorization code replayed: the tokens issued for it are revoked"
        ),
        "nothing was issued, so nothing was replayed"
    );

    // A real replay: redeemed, then presented again.
    let p = pkce();
    let code = code_for(&base, &client_id, &p).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", p.verifier.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (status, first) = token(&base, &form).await;
    assert_eq!(status, 200, "{first}");
    let (status, body) = token(&base, &form).await;
    assert_eq!(status, 400, "{body}");
    let lines = log_lines(&log);
    assert!(has_line(
        &lines,
        "authorization code replayed: the tokens issued for it are revoked"
    ));
    // The tokens of the replayed code no longer work.
    let resp = mcp_status(&format!("{base}/a/mcp"), first["access_token"].as_str()).await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn refused_access_tokens_leave_an_audit_line_without_the_token() {
    let (gw, log) = gateway_logged(config_with(local_auth("memory"))).await;
    let base = gw.url.clone();
    // A token that is not ours.
    let forged = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let resp = mcp_status(&format!("{base}/a/mcp"), Some(forged)).await;
    assert_eq!(resp.status(), 401);
    // A token of ours, for another service.
    let t = tokens_for(
        &base,
        "alice@example.com",
        "pw-alice",
        Some(&format!("{base}/a/mcp")),
    )
    .await;
    let resp = mcp_status(&format!("{base}/b/mcp"), Some(&t.access)).await;
    assert_eq!(resp.status(), 401);
    // No token at all: how clients discover the authorization server; no line.
    let resp = mcp_status(&format!("{base}/a/mcp"), None).await;
    assert_eq!(resp.status(), 401);

    let lines = log_lines(&log);
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "access token refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|l| l["target"] == "audit" && l["ip"] == "127.0.0.1")
    );
    assert!(
        refused
            .iter()
            .any(|l| l["service"] == "b" && l["client_id"] == t.client_id.as_str())
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(forged) && !text.contains(&t.access));

    // Many refusals from one address: the log stays bounded.
    for _ in 0..30 {
        mcp_status(&format!("{base}/a/mcp"), Some(forged)).await;
    }
    let n = log_lines(&log)
        .iter()
        .filter(|l| l["message"] == "access token refused")
        .count();
    assert!(n <= 10, "{n} lines for one address in a minute");
}

#[tokio::test]
async fn the_pages_name_the_gateway_and_what_an_aggregated_endpoint_reaches() {
    let mut config = config_with(local_auth("memory"));
    config["proxy"]["name"] = serde_json::json!("mcpgate demo");
    let (gw, log) = gateway_logged(config).await;
    let base = gw.url.clone();
    let client_id = public_client(&base).await;
    let p = pkce();
    let resource = format!("{base}/mcp");
    let url = Authorize {
        base: &base,
        client_id: &client_id,
        redirect_uri: REDIRECT,
        challenge: &p.challenge,
        resource: Some(&resource),
        scope: None,
        state: "s",
    }
    .url();
    let mut browser = Browser::default();
    let resp = browser.get(&url).await;
    assert_eq!(resp.status(), 302);
    let login = absolute(&base, &location(&resp));
    let page = browser.get(&login).await;
    let html = page.text().await.expect("sign-in page");
    assert!(
        html.contains("<title>Sign in to mcpgate demo</title>"),
        "the sign-in page is titled with proxy.name: {html}"
    );

    // A form whose CSRF value is wrong is refused, and leaves a trace.
    let resp = browser
        .post(
            &format!("{base}/login"),
            &[
                ("request", &field(&html, "request")),
                ("csrf", "mgx_not-the-right-one"),
                ("email", "alice@example.com"),
                ("password", "pw-alice"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let lines = log_lines(&log);
    assert!(lines.iter().any(
        |l| l["message"] == "a sign-in form's CSRF value was refused"
            && l["target"] == "audit"
            && l["client_id"] == client_id.as_str()
    ));

    let consent =
        fill_sign_in_form(&mut browser, &base, &login, "alice@example.com", "pw-alice").await;
    assert!(consent.contains("/consent?"), "{consent}");
    let html = browser
        .get(&consent)
        .await
        .text()
        .await
        .expect("consent page");
    assert!(
        html.contains("the services at <code>/mcp</code> (<code>a</code>, <code>b</code>), as far as this gateway's policies let you use them"),
        "the consent page says what /mcp is: {html}"
    );
}
