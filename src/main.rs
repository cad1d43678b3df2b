use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcpgate::config;
use mcpgate::gateway::{self, Gateway};
use mcpgate::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "mcpgate",
    version,
    about = "One front door for many MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (JSON).
        #[arg(long, short, env = "MCPGATE_CONFIG")]
        config: PathBuf,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Override proxy.addr (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Worker threads (default: one per CPU). On a small machine shared with
        /// its backends, fewer threads mean fewer context switches.
        #[arg(long, env = "MCPGATE_THREADS")]
        threads: Option<usize>,
    },
    /// Check a configuration file; print every problem with its JSON path.
    CheckConfig {
        /// Configuration file (JSON).
        path: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    ConfigSchema,
    /// Read a password on stdin and print its argon2id hash, for a `local` user
    /// in the configuration.
    HashPassword,
    /// Re-encrypt every stored per-user token with the current
    /// `proxy.auth.encryptionKey` (after moving the old key to
    /// `previousEncryptionKeys`). Safe while the gateway runs.
    RotateKeys {
        /// Configuration file (JSON).
        #[arg(long, short, env = "MCPGATE_CONFIG")]
        config: PathBuf,
    },
    /// Retire the access-token signing key in the store and make a new one.
    /// Tokens signed with the old key stay valid until they expire; a running
    /// gateway signs with the new key after a restart.
    RotateSigningKey {
        /// Configuration file (JSON); its `proxy.auth.storage` is used.
        #[arg(long, short, env = "MCPGATE_CONFIG")]
        config: PathBuf,
    },
    /// Be a stdio MCP server for a local client, connected to a remote
    /// (OAuth-protected) MCP server: `mcpgate connect https://host/service/mcp`.
    Connect(mcpgate::connect::Args),
    /// The sign-ins `mcpgate connect` keeps: `auth list`, `auth logout URL`.
    #[command(subcommand)]
    Auth(mcpgate::connect::AuthCommand),
    /// Access policy: `policy explain --user alice@corp.com` prints what that
    /// person can reach and which rule decided each item.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// What one person (or serviceAuths identity) can reach, item by item.
    Explain {
        /// Configuration file (JSON).
        #[arg(long, short, env = "MCPGATE_CONFIG")]
        config: PathBuf,
        /// The person's email.
        #[arg(long, required_unless_present = "service_identity")]
        user: Option<String>,
        /// A group (or role) of theirs, as the identity provider sends it;
        /// repeat for several. Local users' configured groups are added.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Explain for a serviceAuths caller (its `user`) instead of a person.
        #[arg(long, conflicts_with = "user")]
        service_identity: Option<String>,
        /// Do not start the services to list their items; explain by rules only.
        #[arg(long)]
        no_discover: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Connect(args) => mcpgate::connect::main(args),
        Command::Auth(cmd) => mcpgate::connect::auth_main(cmd),
        Command::Policy(PolicyCommand::Explain {
            config,
            user,
            groups,
            service_identity,
            no_discover,
        }) => policy_explain(&config, user, groups, service_identity, !no_discover),
        Command::CheckConfig { path } => match config::load(&path) {
            Ok(s) => {
                println!(
                    "{}: OK ({} service(s): {})",
                    path.display(),
                    s.services.len(),
                    s.services
                        .iter()
                        .map(|s| format!("{} [{}]", s.name, s.backend.kind()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::HashPassword => {
            let mut line = String::new();
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("Password (input is echoed; pipe it in to avoid that): ");
            }
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("could not read a password from stdin");
                return ExitCode::FAILURE;
            }
            let password = line.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                eprintln!("the password is empty; type it (or pipe it) on stdin");
                return ExitCode::FAILURE;
            }
            match mcpgate::util::password::hash(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RotateKeys { config: path } => run_on_store(&path, |auth, store| async move {
            let keys: Vec<[u8; 32]> = auth.encryption_keys.iter().map(|k| k.0).collect();
            let sealer = mcpgate::store::sealed::Sealer::new(&keys)
                .ok_or_else(|| anyhow::anyhow!("proxy.auth.encryptionKey is not set"))?;
            let n = mcpgate::auth::user_tokens::reseal_all(&store, &sealer).await?;
            Ok(format!(
                "re-encrypted {n} stored token(s) with key {}; the previous keys can now be removed from the configuration",
                sealer.current_kid()
            ))
        }),
        Command::RotateSigningKey { config: path } => run_on_store(&path, |_, store| async move {
            let kid = mcpgate::auth::jwt::rotate(&store).await?;
            Ok(format!(
                "new signing key {kid}; restart the gateway to sign with it"
            ))
        }),
        Command::ConfigSchema => {
            print!("{}", config::schema::render());
            ExitCode::SUCCESS
        }
        Command::Serve {
            config: path,
            log_format,
            addr,
            threads,
        } => {
            telemetry::init(log_format);
            let mut settings = match config::load(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(a) = addr {
                if !mcpgate::util::is_loopback(&a) && settings.auth.is_none() {
                    eprintln!(
                        "--addr {a} accepts connections from other machines, but no authentication is configured; use a loopback address such as 127.0.0.1:8080"
                    );
                    return ExitCode::FAILURE;
                }
                settings.addr = a;
            }
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all();
            if let Some(n) = threads.filter(|n| *n > 0) {
                builder.worker_threads(n);
            }
            let rt = match builder.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcpgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Run a maintenance task against the store named by a configuration's
/// `proxy.auth.storage`; print its report.
fn run_on_store<F, Fut>(path: &std::path::Path, task: F) -> ExitCode
where
    F: FnOnce(config::auth::AuthSettings, mcpgate::store::Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let settings = match config::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(auth) = settings.auth else {
        eprintln!("{}: has no proxy.auth section, so no store", path.display());
        return ExitCode::FAILURE;
    };
    let work = async move {
        let spec = mcpgate::store::StoreSpec::parse(&auth.storage)
            .map_err(|e| anyhow::anyhow!("proxy.auth.storage: {e}"))?;
        let store = mcpgate::store::Store::open(&spec).await?;
        let report = task(auth, store.clone()).await;
        store.close().await;
        report
    };
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(work))
    {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut settings: config::Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (proxy.addr): {e}", settings.addr))?;
    let bound = listener.local_addr()?;
    // The public URL follows the address unless it was configured.
    if !settings.base_url_configured {
        settings.base_url = url::Url::parse(&format!("http://{bound}"))?;
    }
    settings.addr = bound;
    let auth = mcpgate::auth::Auth::start(&settings).await?;
    let gw = Gateway::new(settings, auth)?;
    // Machine-readable first line for scripts and tests.
    println!("mcpgate listening on http://{bound}");
    for name in gw.settings.services.iter().map(|s| &s.name) {
        println!(
            "  {name}: {}  (legacy SSE: {})",
            gw.url(&format!("/{name}/mcp")),
            gw.url(&format!("/{name}/sse"))
        );
    }
    for (name, members) in &gw.settings.aggregate.endpoints {
        println!(
            "  all of {}: {}  (legacy SSE: {}; tools named <service>{}<tool>)",
            members
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            gw.url(&mcpgate::config::endpoint_path(name.as_str(), "mcp")),
            gw.url(&mcpgate::config::endpoint_path(name.as_str(), "sse")),
            gw.settings.aggregate.delimiter,
        );
    }
    if let Some(auth) = &gw.auth {
        println!(
            "  sign-in: {} ({} provider); authorization server metadata: {}",
            auth.url("/authorize"),
            auth.settings.idp.kind(),
            auth.url("/.well-known/oauth-authorization-server")
        );
    }
    tracing::info!(addr = %bound, services = gw.services.len(), "mcpgate listening");
    gateway::serve(gw, listener).await
}

fn policy_explain(
    path: &std::path::Path,
    user: Option<String>,
    mut groups: Vec<String>,
    service_identity: Option<String>,
    discover: bool,
) -> ExitCode {
    let settings = match config::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let subject = match (user, service_identity) {
        (_, Some(s)) => mcpgate::caller::Caller::machine(&s),
        (Some(email), None) => {
            // A local user's groups come from the configuration.
            if let Some(config::auth::IdpSettings::Local { users }) =
                settings.auth.as_ref().map(|a| &a.idp)
                && let Some(u) = users.iter().find(|u| u.email.eq_ignore_ascii_case(&email))
            {
                groups.extend(u.groups.iter().cloned());
            }
            mcpgate::caller::Caller::person(&email, groups)
        }
        (None, None) => {
            eprintln!("name who to explain for: --user EMAIL or --service-identity NAME");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(mcpgate::cli::explain::explain(settings, &subject, discover)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
