//! Tokens and client registrations, one file per server, shared by every
//! `mcpgate connect` process for that server.
//!
//! Directory 0700, files 0600, written atomically (temp file + rename) so a
//! reader never sees half a file. A lock file (flock) serializes logins and
//! refreshes across processes: refresh tokens rotate, so two processes refreshing
//! with the same one would make the second look like a replay and revoke both.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use url::Url;

/// How this bridge identifies itself to an authorization server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    /// The issuer this client belongs to: a client id is meaningless elsewhere.
    pub issuer: String,
    /// `pre-registered`, `metadata-document` or `dynamic`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// What `expires_in` said, in milliseconds: sets how early to refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u64>,
    /// The scopes asked for (what the server granted may differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub resource: String,
}

impl Tokens {
    /// Refresh a little before expiry: a fifth of the lifetime, at most a minute,
    /// so the request in flight does not arrive with a token that just died.
    pub fn needs_refresh(&self, now_ms: u64) -> bool {
        match self.expires_at {
            Some(at) => {
                let margin = self.lifetime.map_or(30_000, |l| (l / 5).min(60_000));
                now_ms + margin >= at
            }
            None => false,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

/// Why the token cache cannot be used. Names the file or directory and the
/// system's reason; never what is (or would be) in the file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "neither XDG_CONFIG_HOME nor HOME is set, so there is nowhere to keep tokens; set one of them"
    )]
    NoHome,
    #[error("cannot create the token cache {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("cannot make the token cache {} private: {source}", dir.display())]
    MakePrivate { dir: PathBuf, source: io::Error },
    #[error("cannot encode the token cache entry: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write the token cache {}: {source}", file.display())]
    Write { file: PathBuf, source: io::Error },
    #[error("cannot open the lock file {}: {source}", path.display())]
    OpenLock { path: PathBuf, source: io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("cannot remove {}: {source}", file.display())]
    Remove { file: PathBuf, source: io::Error },
}

pub struct Cache {
    pub dir: PathBuf,
    pub file: PathBuf,
    lock: PathBuf,
}

/// Where the cache lives: `$XDG_CONFIG_HOME/mcpgate/connect`, else `~/.config/...`.
pub fn default_dir() -> Result<PathBuf, CacheError> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("mcpgate").join("connect"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h)
            .join(".config")
            .join("mcpgate")
            .join("connect")),
        None => Err(CacheError::NoHome),
    }
}

impl Cache {
    pub fn for_server(dir: &Path, server: &Url) -> Result<Cache, CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CacheError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        // An existing directory keeps its mode on create; tokens must not be
        // readable by others whatever made it.
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(
            |source| CacheError::MakePrivate {
                dir: dir.to_path_buf(),
                source,
            },
        )?;
        // A hash, not the URL: URLs have characters file systems dislike, and
        // the file name then says nothing about where the user signs in.
        let name = crate::util::sha256_hex(server.as_str().as_bytes());
        let name = &name[..32];
        Ok(Cache {
            dir: dir.to_path_buf(),
            file: dir.join(format!("{name}.json")),
            lock: dir.join(format!("{name}.lock")),
        })
    }

    /// The cached entry; a missing or unreadable file is an empty one (a warning
    /// for the latter: signing in again rewrites it).
    pub fn load(&self) -> Entry {
        match fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                eprintln!(
                    "mcpgate connect: ignoring the unreadable token cache {} ({e}); signing in again will rewrite it",
                    self.file.display()
                );
                Entry::default()
            }),
            Err(_) => Entry::default(),
        }
    }

    pub fn save(&self, entry: &Entry) -> Result<(), CacheError> {
        let body = serde_json::to_vec_pretty(entry).map_err(CacheError::Encode)?;
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            crate::util::random_id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.file)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            CacheError::Write {
                file: self.file.clone(),
                source,
            }
        })
    }

    /// Take the cross-process lock; says so on stderr when another process holds it
    /// (it is probably waiting for someone to finish signing in).
    pub async fn lock(&self) -> Result<Flock<File>, CacheError> {
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&self.lock)
                .map_err(|source| CacheError::OpenLock {
                    path: self.lock.clone(),
                    source,
                })
        };
        let mut told = false;
        loop {
            match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
                Ok(guard) => return Ok(guard),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    if !told {
                        eprintln!(
                            "mcpgate connect: another mcpgate connect for this server is signing in or refreshing; waiting for it"
                        );
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((_, source)) => {
                    return Err(CacheError::Lock {
                        path: self.lock.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// Every cached server (for `mcpgate auth list`), with the file it is in.
pub fn list(dir: &Path) -> Vec<(PathBuf, Entry)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Entry)> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let entry = serde_json::from_slice::<Entry>(&fs::read(&p).ok()?).ok()?;
            Some((p, entry))
        })
        .collect();
    out.sort_by(|a, b| a.1.server.cmp(&b.1.server));
    out
}

impl Cache {
    /// Forget this server's tokens and client (for `mcpgate auth logout`), under
    /// the lock so a running bridge is not mid-refresh. `false` if nothing was cached.
    pub async fn forget(&self) -> Result<bool, CacheError> {
        let _lock = self.lock().await?;
        match fs::remove_file(&self.file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CacheError::Remove {
                file: self.file.clone(),
                source,
            }),
        }
    }
}
