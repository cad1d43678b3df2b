//! `mcpgate connect URL`: a stdio MCP server for local clients (Claude Desktop,
//! Cursor, ...) that is really a remote, OAuth-protected MCP server.
//!
//! stdin and stdout carry newline-delimited JSON-RPC and nothing else; every
//! diagnostic goes to stderr. Messages are forwarded unchanged (only the envelope
//! is parsed, see `jsonrpc`). See `docs/connect.md`.

mod browser;
pub mod cache;
mod oauth;
mod remote;
mod trace;
pub mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use url::Url;

use crate::jsonrpc;
use crate::oauth::client::EndpointError;
pub use remote::TransportKind;

/// Why `mcpgate connect` (or `mcpgate auth`) could not start. Every message
/// names the flag, file or URL and what to do; none holds a secret (flag
/// values given as `env:VAR` are named by the variable).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error(
        "{url:?} is not a URL ({source}); give the server's full address, such as https://mcp.example.com/mcp"
    )]
    NotUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("--client-metadata-url {url:?}: {source}")]
    MetadataUrlNotUrl {
        url: String,
        source: url::ParseError,
    },
    #[error(
        "--client-metadata-url {url}: a client ID metadata document URL must be https with a path"
    )]
    MetadataUrlNotHttps { url: String },
    #[error(transparent)]
    Insecure(#[from] EndpointError),
    #[error(transparent)]
    Flag(#[from] util::UnsetVar),
    #[error(transparent)]
    Header(#[from] remote::HeaderError),
    #[error(transparent)]
    Trace(#[from] trace::TraceFileError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Auth(#[from] oauth::AuthError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

/// How long in-flight requests may still be answered once the client has gone.
const DRAIN: Duration = Duration::from_secs(3);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The remote MCP server: its streamable HTTP endpoint (or legacy SSE URL).
    pub url: String,
    /// `auto` tries streamable HTTP and falls back to legacy SSE.
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: TransportKind,
    /// Which MCP era to speak to the server: `auto` asks it (`server/discover`)
    /// and speaks 2026-07-28 if it can, else the session era (`initialize`).
    #[arg(long, value_enum, default_value = "auto")]
    pub protocol: remote::ProtocolChoice,
    /// An extra HTTP header for the server, "Name: value"; the value may be
    /// `env:VAR`. Repeatable. An Authorization header here replaces sign-in.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Allow plain http to a server that is not on this machine.
    #[arg(long)]
    pub allow_http: bool,
    /// A client id registered at the authorization server (or `env:VAR`).
    #[arg(long, env = "MCP_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Its secret, for confidential clients (or `env:VAR`).
    #[arg(
        long,
        env = "MCP_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: Option<String>,
    /// An https URL of a Client ID Metadata Document describing this client,
    /// used where the authorization server supports them.
    #[arg(long, value_name = "URL")]
    pub client_metadata_url: Option<String>,
    /// Listen for the sign-in callback on this loopback port (default: any free
    /// port). Needed when a pre-registered client has a fixed redirect URI.
    #[arg(long, value_name = "PORT")]
    pub callback_port: Option<u16>,
    /// Do not open a browser: print the sign-in URL and read the final redirect
    /// URL pasted on the terminal (for machines without a browser).
    #[arg(long)]
    pub no_browser: bool,
    /// Seconds to wait for a sign-in to finish.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub login_timeout: u64,
    /// Where tokens are kept (default: $XDG_CONFIG_HOME/mcpgate/connect or
    /// ~/.config/mcpgate/connect).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Write OpenTelemetry-shaped spans (one JSON line per HTTP exchange, no
    /// tokens or secrets) to this file, created 0600.
    #[arg(long, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,
}

/// Entry point of the subcommand.
/// `mcpgate auth ...`: what `connect` keeps about the servers it signed in to.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// List the servers with cached sign-ins: issuer, client, token state.
    List {
        /// Token cache directory (default: $XDG_CONFIG_HOME/mcpgate/connect).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Forget the tokens and client registration cached for a server; the next
    /// `connect` signs in again.
    Logout {
        /// The server's MCP URL, as given to `mcpgate connect`.
        url: String,
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
}

pub fn auth_main(cmd: AuthCommand) -> ExitCode {
    let dir = |d: Option<PathBuf>| d.map_or_else(cache::default_dir, Ok);
    match cmd {
        AuthCommand::List { cache_dir } => {
            let dir = match dir(cache_dir) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("mcpgate auth: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let entries = cache::list(&dir);
            if entries.is_empty() {
                println!("no cached sign-ins in {}", dir.display());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            for (_, e) in entries {
                let client = e.client.as_ref().map_or("-".to_string(), |c| {
                    format!("{} ({}, issuer {})", c.client_id, c.kind, c.issuer)
                });
                let tokens = match &e.tokens {
                    None => "signed out".to_string(),
                    Some(t) => {
                        let access = match t.expires_at {
                            Some(at) if at > now => {
                                format!("access token valid for {}s", (at - now) / 1000)
                            }
                            Some(_) => "access token expired".to_string(),
                            None => "access token without expiry".to_string(),
                        };
                        let refresh = if t.refresh_token.is_some() {
                            ", can refresh"
                        } else {
                            ""
                        };
                        format!("{access}{refresh}")
                    }
                };
                println!("{}\n  client: {client}\n  {tokens}", e.server);
            }
            ExitCode::SUCCESS
        }
        AuthCommand::Logout { url, cache_dir } => {
            let (dir, url) = match (dir(cache_dir), Url::parse(&url)) {
                (Ok(d), Ok(u)) => (d, u),
                (Err(e), _) => {
                    eprintln!("mcpgate auth: {e}");
                    return ExitCode::FAILURE;
                }
                (_, Err(e)) => {
                    eprintln!("mcpgate auth logout: {url:?} is not a URL ({e})");
                    return ExitCode::FAILURE;
                }
            };
            let forget = || -> Result<bool, ConnectError> {
                let cache = cache::Cache::for_server(&dir, &url)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ConnectError::Runtime)?;
                Ok(rt.block_on(cache.forget())?)
            };
            let result = forget();
            match result {
                Ok(true) => {
                    println!("signed out of {url}: its cached tokens and client are gone");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    println!("nothing was cached for {url}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcpgate auth logout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

pub fn main(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcpgate connect: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        match run(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("mcpgate connect: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Blocking reads of stdin must not keep the process alive.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

fn optional(value: Option<String>, flag: &str) -> Result<Option<String>, util::UnsetVar> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| util::resolve_value(&v, flag))
        .transpose()
}

async fn run(args: Args) -> Result<ExitCode, ConnectError> {
    if let Some(path) = &args.trace_file {
        trace::init(path)?;
    }
    let url = Url::parse(&args.url).map_err(|source| ConnectError::NotUrl {
        url: args.url.clone(),
        source,
    })?;
    util::check_secure(&url, args.allow_http, "the server")?;
    let headers = remote::parse_headers(&args.headers)?;
    let opts = oauth::Options {
        client_id: optional(args.client_id, "--client-id")?,
        client_secret: optional(args.client_secret, "--client-secret")?,
        client_metadata_url: optional(args.client_metadata_url, "--client-metadata-url")?,
        callback_port: args.callback_port,
        no_browser: args.no_browser,
        allow_http: args.allow_http,
        login_timeout: Duration::from_secs(args.login_timeout.max(1)),
    };
    if let Some(u) = &opts.client_metadata_url {
        let parsed = Url::parse(u).map_err(|source| ConnectError::MetadataUrlNotUrl {
            url: u.clone(),
            source,
        })?;
        if parsed.scheme() != "https" || parsed.path() == "/" {
            return Err(ConnectError::MetadataUrlNotHttps { url: u.clone() });
        }
    }
    let dir = match args.cache_dir {
        Some(d) => d,
        None => cache::default_dir()?,
    };
    let cache = cache::Cache::for_server(&dir, &url)?;
    let auth = Arc::new(oauth::Auth::new(url.clone(), cache, opts)?);

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let remote = Arc::new(remote::Remote::new(
        url,
        headers,
        auth,
        out_tx.clone(),
        args.transport,
        args.protocol,
    )?);

    let writer_remote = Arc::clone(&remote);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = out_rx.recv().await {
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                // The client is gone; nobody is listening any more.
                writer_remote.shutdown.cancel();
                return;
            }
        }
    });

    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = JoinSet::new();
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = remote.shutdown.cancelled() => break,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                eprintln!("mcpgate connect: reading stdin: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let incoming = match jsonrpc::parse_body(&Bytes::from(line)) {
            Ok(i) => i,
            Err(e) => {
                eprintln!(
                    "mcpgate connect: a line on stdin is not JSON-RPC: {}",
                    e.message()
                );
                let err = jsonrpc::error_response(None, e.code(), e.message(), None);
                let _ = out_tx.send(err.raw.to_vec());
                continue;
            }
        };
        for msg in incoming.messages {
            // Requests may take long, so they run side by side. Everything else
            // (initialize, notifications such as `initialized`, answers to the
            // server's own requests) is sent in order before the next line: a
            // request must never overtake the `initialized` before it (servers
            // refuse requests that arrive before the handshake is complete).
            let initialize = msg.method() == Some("initialize") || !msg.is_request();
            let r = Arc::clone(&remote);
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            tasks.spawn(async move {
                r.send(msg).await;
                let _ = done_tx.send(());
            });
            // Everything else the client says belongs to the session initialize
            // opens (and may need its sign-in), so wait for it first.
            if initialize {
                tokio::select! {
                    _ = done_rx => {}
                    _ = sigint.recv() => { remote.shutdown.cancel(); }
                    _ = sigterm.recv() => { remote.shutdown.cancel(); }
                }
                if remote.shutdown.is_cancelled() {
                    break;
                }
            }
        }
        // Reap finished tasks as we go.
        while tasks.try_join_next().is_some() {}
    }

    // Let answers already on their way reach the client, then end the session.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        tasks.abort_all();
    }
    remote.shutdown.cancel();
    remote.close().await;
    drop(out_tx);
    let failed = remote.failed.load(Ordering::SeqCst);
    drop(remote);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, ConnectError> {
    tokio::signal::unix::signal(kind).map_err(ConnectError::Signals)
}
