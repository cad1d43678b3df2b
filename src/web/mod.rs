//! The gateway's HTML pages (sign-in, consent, errors), rendered on the server
//! with every interpolated value escaped, and sent with headers that keep them
//! out of frames, caches and referrers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escape text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,sans-serif;background:#f5f5f7;color:#1d1d1f;margin:0}\
main{max-width:28rem;margin:4rem auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}\
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .3rem;font-size:.9rem}\
input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #ccc;border-radius:6px;font-size:1rem}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;border:0;border-radius:6px;font-size:1rem;cursor:pointer;background:#0a66d8;color:#fff}\
button.secondary{background:#e5e5ea;color:#1d1d1f;margin-left:.5rem}.error{color:#b00020}.muted{color:#666;font-size:.85rem}\
ul{padding-left:1.2rem}code{background:#f0f0f3;padding:.1rem .3rem;border-radius:4px}";

/// A complete page. `body` must already be escaped where it holds data.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    resp
}

/// Anti-framing (clickjacking of the consent button), no caching, no referrer
/// (URLs may carry a request handle), no sniffing. No `form-action`: browsers
/// apply it to the redirect after a form post, which goes to the client.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// An error page: what went wrong and what to do.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p>",
            escape(title),
            escape(message)
        ),
    )
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
