//! The fetcher end to end, against local servers: documents accepted and
//! cleaned, caching, every refusal with its reason, size and time limits, and
//! internal addresses refused without a connection being made.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header as h};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

use reqwest::dns::{Name, Resolve};
use serde_json::Value;
use url::Url;

use super::address::NON_PUBLIC;
use super::fetch::{self, GuardedResolver, NonPublicAddress};
use super::*;

fn dev_policy() -> CimdPolicy {
    CimdPolicy {
        allow_private_networks: true,
        ..CimdPolicy::default()
    }
}

fn json_response(body: String) -> axum::response::Response {
    ([(h::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A local server with documents on a number of paths, and a count of the
/// HTTP requests it saw.
async fn serve() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));

    let doc = |path: &str| {
        json!({
            "client_id": format!("{base}{path}"),
            "client_name": "  Test\u{202e} App  ",
            "client_uri": "https://app.example.com/",
            "logo_uri": "javascript:alert(1)",
            "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
            "grant_types": ["authorization_code"],
            "some_future_field": {"ignored": true},
        })
    };
    let fixed = |v: Value| {
        let body = v.to_string();
        move || {
            let body = body.clone();
            async move { json_response(body) }
        }
    };

    let mut mismatch = doc("/mismatch");
    mismatch["client_id"] = json!("https://other.example.com/client.json");
    let mut no_redirects = doc("/no-redirects");
    no_redirects
        .as_object_mut()
        .expect("object")
        .remove("redirect_uris");
    let mut js = doc("/js");
    js["redirect_uris"] = json!(["javascript:alert(1)"]);
    let mut secret = doc("/secret");
    secret["client_secret"] = json!("hunter2");
    let mut basic = doc("/basic");
    basic["token_endpoint_auth_method"] = json!("client_secret_basic");
    let mut big = doc("/big");
    big["padding"] = json!("x".repeat(20 * 1024));
    let html = doc("/html").to_string();
    let vendor = doc("/vendor").to_string();
    let short_lived = doc("/short-lived").to_string();
    let slow = doc("/slow").to_string();

    let counter = hits.clone();
    let app = Router::new()
        .route("/good", get(fixed(doc("/good"))))
        .route("/mismatch", get(fixed(mismatch)))
        .route("/no-redirects", get(fixed(no_redirects)))
        .route("/js", get(fixed(js)))
        .route("/secret", get(fixed(secret)))
        .route("/basic", get(fixed(basic)))
        .route("/big", get(fixed(big)))
        .route("/array", get(fixed(json!([1, 2]))))
        .route(
            "/big-chunked",
            get(|| async {
                let chunks = vec![Ok::<_, Infallible>(Bytes::from(vec![b' '; 1024])); 40];
                (
                    [(h::CONTENT_TYPE, "application/json")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/html",
            get(move || async move { ([(h::CONTENT_TYPE, "text/html")], html) }),
        )
        .route(
            "/vendor",
            get(move || async move {
                (
                    [(
                        h::CONTENT_TYPE,
                        "application/client-metadata+json; charset=utf-8",
                    )],
                    vendor,
                )
            }),
        )
        .route(
            "/short-lived",
            get(move || async move {
                (
                    [
                        (h::CONTENT_TYPE, "application/json"),
                        (h::CACHE_CONTROL, "public, max-age=0"),
                    ],
                    short_lived,
                )
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                json_response(slow)
            }),
        )
        .route(
            "/slow-body",
            get(|| async {
                let first = futures_util::stream::once(async {
                    Ok::<_, Infallible>(Bytes::from_static(b"{\"client_id\":"))
                });
                let stall = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok::<_, Infallible>(Bytes::from_static(b"\"x\"}"))
                });
                (
                    [(h::CONTENT_TYPE, "application/json")],
                    Body::from_stream(first.chain(stall)),
                )
            }),
        )
        .route(
            "/redirect",
            get(|| async { (StatusCode::FOUND, [(h::LOCATION, "/good")]) }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such client") }),
        )
        .layer(axum::middleware::map_request(
            move |req: axum::extract::Request| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    req
                }
            },
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, hits)
}

/// A TCP listener that only counts connections: proof that a refused URL
/// never reached the network, even where TLS would have failed anyway.
async fn trap(addr: &str) -> Option<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let port = listener.local_addr().ok()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    Some((port, accepted))
}

async fn refused(fetcher: &CimdFetcher, url: &str) -> String {
    let err = fetcher.fetch(url).await.expect_err(url);
    assert_eq!(err.code, ErrorCode::InvalidClient, "{url}");
    err.description.into_owned()
}

#[tokio::test]
async fn a_valid_document_is_fetched_and_cleaned() {
    let (base, hits) = serve().await;
    let fetcher = CimdFetcher::new(dev_policy());
    let id = format!("{base}/good");
    assert!(fetcher.is_metadata_url(&id));
    let meta = fetcher.fetch(&id).await.expect("valid document");
    assert_eq!(meta.client_id, id);
    assert_eq!(meta.client_name.as_deref(), Some("Test App"));
    assert_eq!(meta.client_uri.as_deref(), Some("https://app.example.com/"));
    assert_eq!(meta.logo_uri, None, "javascript: logo dropped");
    assert_eq!(meta.token_endpoint_auth_method, "none");
    let uris: Vec<&str> = meta.redirect_uris.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        uris,
        ["http://127.0.0.1/callback", "https://app.example.com/cb"]
    );
    assert!(meta.redirect_uris[0].matches("http://127.0.0.1:4711/callback"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let vendor = fetcher
        .fetch(&format!("{base}/vendor"))
        .await
        .expect("+json content type with parameters is accepted");
    assert_eq!(vendor.redirect_uris.len(), 2);
}

#[tokio::test]
async fn successes_and_failures_are_cached_unless_the_server_says_not_to() {
    let (base, hits) = serve().await;
    let fetcher = CimdFetcher::new(dev_policy());
    let id = format!("{base}/good");
    let first = fetcher.fetch(&id).await.expect("valid");
    let second = fetcher.fetch(&id).await.expect("cached");
    assert_eq!(first.client_id, second.client_id);
    assert_eq!(first.redirect_uris, second.redirect_uris);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "second fetch from the cache"
    );

    let bad = format!("{base}/mismatch");
    let e1 = fetcher.fetch(&bad).await.expect_err("mismatch");
    let e2 = fetcher.fetch(&bad).await.expect_err("mismatch, cached");
    assert_eq!(e1, e2);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "failures cached briefly");

    let short_lived = format!("{base}/short-lived");
    fetcher.fetch(&short_lived).await.expect("valid");
    fetcher.fetch(&short_lived).await.expect("valid");
    assert_eq!(hits.load(Ordering::SeqCst), 4, "max-age=0 is not cached");

    let uncached = CimdFetcher::new(CimdPolicy {
        cache_ttl: Duration::ZERO,
        ..dev_policy()
    });
    uncached.fetch(&id).await.expect("valid");
    uncached.fetch(&id).await.expect("valid");
    assert_eq!(hits.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn bad_documents_are_refused_with_the_reason() {
    let (base, hits) = serve().await;
    let fetcher = CimdFetcher::new(dev_policy());
    for (path, why) in [
        ("/mismatch", "not the URL it was fetched from"),
        ("/no-redirects", "has no redirect_uris"),
        ("/js", "redirect_uris[0]"),
        ("/secret", "must not contain client_secret"),
        ("/basic", "client_secret_basic"),
        ("/array", "not a JSON object"),
        ("/html", "content type \"text/html\""),
        ("/missing", "HTTP 404"),
        ("/redirect", "redirect (HTTP 302)"),
    ] {
        let desc = refused(&fetcher, &format!("{base}{path}")).await;
        assert!(desc.contains(why), "{path}: {desc}");
        assert!(!desc.contains("hunter2"), "{path}: secret echoed: {desc}");
        assert!(!desc.contains("some_future_field"), "{path}: body echoed");
    }
    let desc = refused(&fetcher, &format!("{base}/js")).await;
    assert!(desc.contains("javascript"), "{desc}");
    // The redirect target was not fetched.
    assert_eq!(hits.load(Ordering::SeqCst), 9);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_or_without_a_length() {
    let (base, _) = serve().await;
    let fetcher = CimdFetcher::new(dev_policy());
    for path in ["/big", "/big-chunked"] {
        let desc = refused(&fetcher, &format!("{base}{path}")).await;
        assert!(desc.contains("larger than 16384 bytes"), "{path}: {desc}");
    }
}

#[tokio::test]
async fn slow_servers_are_cut_off_including_a_stalled_body() {
    let (base, _) = serve().await;
    let fetcher = CimdFetcher::new(CimdPolicy {
        timeout: Duration::from_millis(300),
        ..dev_policy()
    });
    for path in ["/slow", "/slow-body"] {
        let started = Instant::now();
        let desc = refused(&fetcher, &format!("{base}{path}")).await;
        assert!(
            desc.contains("within 300 ms") || desc.contains("timed out"),
            "{path}: {desc}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{path}");
    }
}

#[tokio::test]
async fn internal_addresses_are_refused_before_connecting() {
    let fetcher = CimdFetcher::new(CimdPolicy::default());
    let (port, accepted) = trap("127.0.0.1:0").await.expect("bind");
    let mut urls = vec![
        format!("https://127.0.0.1:{port}/x"),
        format!("https://localhost:{port}/x"),
        format!("https://LOCALHOST.:{port}/x"),
        format!("https://[::ffff:127.0.0.1]:{port}/x"),
        format!("https://2130706433:{port}/x"),
        "https://10.0.0.1/x".to_owned(),
        "https://[::1]/x".to_owned(),
        "https://169.254.169.254/latest".to_owned(),
        "https://[fd00::1]/x".to_owned(),
        "https://100.64.0.1/x".to_owned(),
    ];
    let v6 = trap("[::1]:0").await;
    if let Some((p6, _)) = &v6 {
        urls.push(format!("https://[::1]:{p6}/x"));
    }
    for url in &urls {
        assert!(fetcher.is_metadata_url(url));
        let desc = refused(&fetcher, url).await;
        assert!(desc.contains("non-public address"), "{url}: {desc}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
    if let Some((_, accepted6)) = v6 {
        assert_eq!(accepted6.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn the_resolver_refuses_names_of_internal_addresses() {
    let name: Name = "localhost".parse().expect("name");
    let err = GuardedResolver
        .resolve(name)
        .await
        .err()
        .expect("localhost refused");
    assert!(err.is::<NonPublicAddress>(), "{err}");

    // Through the HTTP client, skipping the checks made before sending: the
    // resolver alone keeps the request from leaving.
    let (port, accepted) = trap("127.0.0.1:0").await.expect("bind");
    let fetcher = CimdFetcher::new(CimdPolicy::default());
    let url = Url::parse(&format!("https://localhost:{port}/x")).expect("url");
    let why = fetch::download(&fetcher.http, url, fetcher.policy.max_bytes)
        .await
        .expect_err("refused");
    assert_eq!(why, FetchFailed::NonPublic);
    assert_eq!(why.to_string(), NON_PUBLIC);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn urls_breaking_the_draft_rules_are_refused() {
    let fetcher = CimdFetcher::new(CimdPolicy::default());
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    for (url, why) in [
        ("http://example.com/x", "must use https"),
        ("https://example.com/", "must have a path"),
        ("https://example.com", "must have a path"),
        ("https://example.com/a#frag", "fragment"),
        ("https://example.com/a#", "fragment"),
        ("https://user:pw@example.com/x", "username or password"),
        ("https://example.com/a/../b", "path segments"),
        ("https://example.com/a/./b", "path segments"),
        ("https://example.com/a/%2E%2e/b", "path segments"),
        ("https://example.com/a b", "plain ASCII"),
        ("https://example.com\\a", "plain ASCII"),
        (long.as_str(), "longer than 2048"),
    ] {
        let desc = refused(&fetcher, url).await;
        assert!(desc.contains(why), "{url}: {desc}");
    }
    assert!(!fetcher.is_metadata_url("http://example.com/x"));
    assert!(!fetcher.is_metadata_url("my-registered-client"));
    assert!(CimdFetcher::new(dev_policy()).is_metadata_url("http://127.0.0.1:1/x"));
}
