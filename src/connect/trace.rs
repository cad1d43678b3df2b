//! `--trace-file`: one JSON line per HTTP exchange, OpenTelemetry-shaped
//! (trace and span ids, start and end in unix nanoseconds, attributes), for
//! seeing what the bridge did when a sign-in or a call goes wrong.
//!
//! Only the method, the URL without its query (codes and states travel there)
//! and the status are recorded: never headers, bodies, tokens or secrets.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde_json::json;

static SINK: OnceLock<Mutex<File>> = OnceLock::new();
static TRACE_ID: OnceLock<String> = OnceLock::new();

/// Start writing spans to `path` (created 0600, appended to).
pub fn init(path: &Path) -> Result<(), TraceFileError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| TraceFileError {
            path: path.to_path_buf(),
            source,
        })?;
    let _ = SINK.set(Mutex::new(file));
    let _ = TRACE_ID.set(hex(16));
    Ok(())
}

/// The `--trace-file` cannot be opened for appending.
#[derive(Debug, thiserror::Error)]
#[error("--trace-file {}: {source}", path.display())]
pub struct TraceFileError {
    path: PathBuf,
    source: std::io::Error,
}

fn hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Send a request, recording it as a span named `name` when tracing is on.
pub trait Traced {
    fn traced(
        self,
        name: &'static str,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send;
}

impl Traced for reqwest::RequestBuilder {
    async fn traced(self, name: &'static str) -> reqwest::Result<reqwest::Response> {
        let Some(sink) = SINK.get() else {
            return self.send().await;
        };
        let (client, request) = self.build_split();
        let request = request?;
        let method = request.method().to_string();
        let mut url = request.url().clone();
        url.set_query(None);
        url.set_fragment(None);
        let start = now_nanos();
        let result = client.execute(request).await;
        let end = now_nanos();
        let (status, error) = match &result {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (
                None,
                Some(if e.is_timeout() {
                    "timeout"
                } else {
                    "transport error"
                }),
            ),
        };
        let line = json!({
            "traceId": TRACE_ID.get(),
            "spanId": hex(8),
            "name": name,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": {
                "http.request.method": method,
                "url.full": url.as_str(),
                "http.response.status_code": status,
                "error.type": error,
            },
            "status": {"code": if error.is_some() || status.is_some_and(|s| s >= 500) { "ERROR" } else { "OK" }},
        });
        if let Ok(mut f) = sink.lock() {
            let _ = writeln!(f, "{line}");
        }
        result
    }
}
