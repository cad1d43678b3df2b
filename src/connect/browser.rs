//! Getting the person through the authorization page: the loopback callback
//! (RFC 8252), opening a browser, or pasting the final URL on a headless machine.

use std::collections::HashMap;
use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// Why the person could not be brought to (or back from) the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "--callback-port {port}: 127.0.0.1:{port} is already in use (another mcpgate connect signing in, or another program); free it or choose another port with --callback-port (the redirect URI registered for a pre-registered client must use the same port)"
    )]
    PortInUse { port: u16 },
    #[error("--callback-port {port}: cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: io::Error },
    #[error("cannot listen on a free loopback port for the sign-in callback: {0}")]
    NoFreePort(#[source] io::Error),
    #[error("loopback callback: {0}")]
    Callback(#[source] io::Error),
    #[error("$BROWSER is empty")]
    EmptyBrowser,
    #[error("cannot start the browser {program:?}: {source}")]
    Start { program: String, source: io::Error },
    #[error(
        "--no-browser needs a terminal to paste the redirect URL into, and /dev/tty cannot be opened ({0}); run mcpgate connect once from a terminal to sign in, the tokens are then cached"
    )]
    NoTerminal(#[source] io::Error),
    #[error("reading the pasted URL: {0}")]
    ReadPasted(#[source] io::Error),
    #[error("the terminal closed before a URL was pasted")]
    TerminalClosed,
}

/// The loopback listener the authorization server redirects the browser to.
pub struct Callback {
    listener: TcpListener,
    pub redirect_uri: String,
}

impl Callback {
    /// Bind before anything else happens: a busy `--callback-port` must fail
    /// before a browser tab opens, or every retry opens another tab.
    pub async fn bind(port: Option<u16>) -> Result<Callback, BrowserError> {
        let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .map_err(|source| match port {
                Some(port) if source.kind() == io::ErrorKind::AddrInUse => {
                    BrowserError::PortInUse { port }
                }
                Some(port) => BrowserError::Listen { port, source },
                None => BrowserError::NoFreePort(source),
            })?;
        let port = listener
            .local_addr()
            .map_err(BrowserError::Callback)?
            .port();
        Ok(Callback {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
        })
    }

    /// Wait for the redirect that carries our `state`; answer the browser with a
    /// small page. Requests for other paths (favicon) or other states are
    /// answered and ignored.
    pub async fn wait(&self, state: &str) -> Result<HashMap<String, String>, BrowserError> {
        loop {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .map_err(BrowserError::Callback)?;
            match tokio::time::timeout(Duration::from_secs(10), serve_one(stream, state)).await {
                Ok(Some(params)) => return Ok(params),
                Ok(None) | Err(_) => continue,
            }
        }
    }
}

async fn serve_one(mut stream: TcpStream, state: &str) -> Option<HashMap<String, String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.lines().next()?.split(' ').nth(1)?.to_string();
    let url = Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let ours = url.path() == "/callback" && params.get("state").map(String::as_str) == Some(state);
    let (status, body) = if !ours {
        ("404 Not Found", "Not the sign-in callback.")
    } else if params.contains_key("error") {
        (
            "200 OK",
            "Sign-in did not complete. See the terminal of mcpgate connect for the reason; you can close this tab.",
        )
    } else {
        (
            "200 OK",
            "Signed in. mcpgate connect has what it needs; you can close this tab.",
        )
    };
    let page =
        format!("<!doctype html><meta charset=utf-8><title>mcpgate connect</title><p>{body}</p>");
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\nreferrer-policy: no-referrer\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    ours.then_some(params)
}

/// Open the URL in a browser without a shell: `$BROWSER` (its first
/// colon-separated entry; `%s` is replaced by the URL, else the URL is appended),
/// else the platform opener. Returns a description of what was run.
pub fn open(url: &str) -> Result<String, BrowserError> {
    let (program, args) = match std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        Some(b) => {
            let first = b.split(':').find(|s| !s.trim().is_empty()).unwrap_or(&b);
            let mut parts = first.split_whitespace().map(str::to_string);
            let program = parts.next().ok_or(BrowserError::EmptyBrowser)?;
            let mut args: Vec<String> = parts.collect();
            if args.iter().any(|a| a.contains("%s")) {
                for a in &mut args {
                    *a = a.replace("%s", url);
                }
            } else {
                args.push(url.to_string());
            }
            (program, args)
        }
        None if cfg!(target_os = "macos") => ("open".to_string(), vec![url.to_string()]),
        None => ("xdg-open".to_string(), vec![url.to_string()]),
    };
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        // Never let the browser write on our stdout: it carries the protocol.
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| BrowserError::Start {
            program: program.clone(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(program)
}

/// Headless sign-in: read the URL the browser ended on from the terminal (not
/// stdin, which carries the protocol).
pub async fn read_pasted_redirect(state: &str) -> Result<HashMap<String, String>, BrowserError> {
    let tty = tokio::fs::File::open("/dev/tty")
        .await
        .map_err(BrowserError::NoTerminal)?;
    let mut lines = BufReader::new(tty).lines();
    loop {
        eprintln!(
            "mcpgate connect: after approving, the browser goes to an address starting with http://127.0.0.1 (the page may fail to load). Paste that whole address here and press Enter:"
        );
        let line = lines
            .next_line()
            .await
            .map_err(BrowserError::ReadPasted)?
            .ok_or(BrowserError::TerminalClosed)?;
        let Ok(url) = Url::parse(line.trim()) else {
            eprintln!("mcpgate connect: that is not a URL");
            continue;
        };
        let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        if params.get("state").map(String::as_str) != Some(state) {
            eprintln!(
                "mcpgate connect: that URL is not the answer to this sign-in (its state differs); paste the address of the latest attempt"
            );
            continue;
        }
        return Ok(params);
    }
}
