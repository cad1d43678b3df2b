//! Durable state of the authorization server: registered clients, refresh
//! tokens, pending authorization codes, consent grants — anything that must
//! outlive a restart or be shared by every request handler.
//!
//! Every record is a JSON document filed under a *kind* (its namespace, from
//! [`Record::KIND`]) and a *key*, with an optional expiry time. The backends
//! know nothing about the record types: they keep `(kind, key) -> text` rows
//! and answer the same handful of statements (upsert, insert-if-absent, get,
//! get-and-delete, delete, list, purge). That is deliberate. A typed schema
//! would have to be migrated by every backend each time a record gains a
//! field; a generic one means adding PostgreSQL is one new file holding the
//! same statements in its own SQL dialect, and a new record type is one
//! `impl Record` with no migration at all. Schema drift inside a record shows
//! up as a [`StoreError::Corrupt`] naming the kind and key, never a panic.
//!
//! Values are stored exactly as given. Protecting secrets is the caller's job:
//! refresh tokens and client secrets arrive here already hashed, and anything
//! else that must not be readable from the database file has to be encrypted
//! before it is handed to [`Store::put`]. For the same reason, no error
//! message produced here quotes a stored value.
//!
//! Expiry is wall-clock unix seconds. A row whose `expires_at <= now` is gone
//! as far as readers are concerned ([`Store::get`], [`Store::take`],
//! [`Store::list`]) and may be replaced by [`Store::insert_new`]; it is
//! physically removed by [`Store::purge_expired`], which the owner of the
//! store should call now and then.

mod memory;
pub mod sealed;
mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

/// A thing the store keeps. `KIND` names its namespace ("client", "refresh",
/// ...); two record types must never share a kind.
pub trait Record: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    const KIND: &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store path {path} is a directory; point the store at a file inside it, e.g. \"sqlite:{path}/mcpgate.db\""
    )]
    IsDirectory { path: PathBuf },
    #[error(
        "the store file {path} exists but is not an SQLite database; move it aside or point the store at a different file"
    )]
    NotADatabase { path: PathBuf },
    #[error(
        "cannot {action} {path}: {source}; make sure the user running mcpgate can write there, or choose another store path"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the store database {path}: {source}; check the file and its permissions, or choose another store path"
    )]
    Open { path: PathBuf, source: sqlx::Error },
    #[error(
        "cannot bring the store database {path} up to date: {source}; if a newer mcpgate wrote this file, run that version or restore a backup"
    )]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "store {op} of {kind} records in {location} failed: {source}; check the disk and the permissions of the store file"
    )]
    Query {
        op: &'static str,
        kind: &'static str,
        location: String,
        source: sqlx::Error,
    },
    #[error("cannot encode the {kind} record {key:?} for storage: {detail}")]
    Encode {
        kind: &'static str,
        key: String,
        detail: String,
    },
    #[error(
        "the stored {kind} record {key:?} {detail}; delete it or restore the store from a backup"
    )]
    Corrupt {
        kind: &'static str,
        key: String,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where records live, parsed from config text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// Gone when the process exits: for tests and throwaway setups.
    Memory,
    /// An SQLite file, created (with its directory) on first start.
    Sqlite(PathBuf),
}

/// Why a `storage` setting names no store. Each message shows the form to
/// write; a database URL is never echoed past its scheme (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreSpecError {
    #[error("\"sqlite:\" needs a file path, e.g. \"sqlite:/var/lib/mcpgate/mcpgate.db\"")]
    NoPath,
    #[error("for a store that is not kept on disk write \"memory\", not \"sqlite::memory:\"")]
    SqliteMemory,
    /// `sqlite://x`: relative to some tools, absolute to others.
    #[error(
        "write the store path without \"//\": \"sqlite:/absolute/path.db\" or \"sqlite:relative/path.db\" (got \"sqlite:{0}\")"
    )]
    DoubleSlash(String),
    #[error(
        "PostgreSQL stores (\"postgres:...\") are not supported yet; use \"sqlite:/path/to/mcpgate.db\" or \"memory\""
    )]
    Postgres,
    /// Only the scheme (`redis:...`) or the whole text when it has none.
    #[error(
        "unknown store {0:?}: expected \"memory\" or \"sqlite:/path/to/mcpgate.db\" (\"postgres:\" is not supported yet)"
    )]
    Unknown(String),
}

impl StoreSpec {
    /// `"memory"`, `"sqlite:/abs/path.db"` or `"sqlite:relative.db"` (relative
    /// to the working directory).
    pub fn parse(text: &str) -> std::result::Result<StoreSpec, StoreSpecError> {
        let text = text.trim();
        if text == "memory" {
            return Ok(StoreSpec::Memory);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(StoreSpecError::NoPath);
            }
            if path == ":memory:" {
                return Err(StoreSpecError::SqliteMemory);
            }
            // URL-style "sqlite://x" means a relative path to some tools and an
            // absolute one to others; guessing wrong puts the tokens somewhere
            // unexpected, so make the user say which.
            if path.starts_with("//") {
                return Err(StoreSpecError::DoubleSlash(path.to_owned()));
            }
            return Ok(StoreSpec::Sqlite(PathBuf::from(path)));
        }
        // Only the scheme is echoed: the rest of a database URL may hold a password.
        if text.starts_with("postgres:") || text.starts_with("postgresql:") {
            return Err(StoreSpecError::Postgres);
        }
        let shown = match text.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:..."),
            None => text.to_owned(),
        };
        Err(StoreSpecError::Unknown(shown))
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("memory"),
            StoreSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

/// The raw backend: `(kind, key) -> JSON text` rows with an optional expiry
/// in unix seconds. Object-safe so [`Store`] can hold any of them behind one
/// pointer; a new database is a new implementation of this trait.
///
/// Every method except `purge_expired` treats a row with `expires_at <= now`
/// as absent, with `now` taken from [`unix_now`].
pub trait Backend: Send + Sync + 'static {
    /// Insert or overwrite.
    fn put<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
        value: String,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Insert only if no live row has this key (an expired one is replaced).
    /// True if the row was written.
    fn insert_new<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
        value: String,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, Result<bool>>;

    fn get<'a>(&'a self, kind: &'static str, key: &'a str)
    -> BoxFuture<'a, Result<Option<String>>>;

    /// Get and delete in one atomic step: of any number of concurrent callers
    /// for one key, exactly one receives the value. Single-use authorization
    /// codes rely on this.
    fn take<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>>;

    /// True if a live row was deleted (an expired row is removed too, but
    /// reported as absent).
    fn delete<'a>(&'a self, kind: &'static str, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// All live rows of a kind as `(key, value)`, ordered by key bytes.
    fn list(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>>>;

    /// Physically remove every row with `expires_at <= now`; the count removed.
    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>>;

    /// Let go of files and connections. Further calls may fail.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Typed access to a [`Backend`]. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (and for SQLite creates and migrates) the store `spec` names.
    pub async fn open(spec: &StoreSpec) -> Result<Store> {
        match spec {
            StoreSpec::Memory => Ok(Store::memory()),
            StoreSpec::Sqlite(path) => {
                let backend = sqlite::SqliteBackend::open(path).await?;
                Ok(Store::from_backend(Arc::new(backend)))
            }
        }
    }

    pub fn memory() -> Store {
        Store::from_backend(Arc::new(memory::MemoryBackend::default()))
    }

    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Store { backend }
    }

    /// Insert or overwrite. `expires_at` is rounded down to whole seconds.
    pub async fn put<R: Record>(
        &self,
        key: &str,
        value: &R,
        expires_at: Option<SystemTime>,
    ) -> Result<()> {
        let text = encode(key, value)?;
        self.backend
            .put(R::KIND, key, text, expires_at.map(unix_seconds))
            .await
    }

    /// Insert unless a live record has this key; true if written.
    pub async fn insert_new<R: Record>(
        &self,
        key: &str,
        value: &R,
        expires_at: Option<SystemTime>,
    ) -> Result<bool> {
        let text = encode(key, value)?;
        self.backend
            .insert_new(R::KIND, key, text, expires_at.map(unix_seconds))
            .await
    }

    pub async fn get<R: Record>(&self, key: &str) -> Result<Option<R>> {
        match self.backend.get(R::KIND, key).await? {
            Some(text) => decode(key, &text).map(Some),
            None => Ok(None),
        }
    }

    /// Get and delete atomically: exactly one of many concurrent callers gets
    /// the record. A record that no longer decodes is still deleted.
    pub async fn take<R: Record>(&self, key: &str) -> Result<Option<R>> {
        match self.backend.take(R::KIND, key).await? {
            Some(text) => decode(key, &text).map(Some),
            None => Ok(None),
        }
    }

    /// True if a live record was deleted.
    pub async fn delete<R: Record>(&self, key: &str) -> Result<bool> {
        self.backend.delete(R::KIND, key).await
    }

    /// Every live record of this type, ordered by key. One undecodable record
    /// fails the whole listing, naming its key.
    pub async fn list<R: Record>(&self) -> Result<Vec<(String, R)>> {
        self.backend
            .list(R::KIND)
            .await?
            .into_iter()
            .map(|(key, text)| {
                let value = decode(&key, &text)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Removes expired records of every kind; the number removed.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.backend.purge_expired(unix_now()).await
    }

    /// Closes the backend (for SQLite: the connection pool, which checkpoints
    /// the WAL). Every clone of this store is closed with it.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}

/// The clock every backend measures expiry against.
pub fn unix_now() -> i64 {
    unix_seconds(SystemTime::now())
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // A time before 1970 can only mean "already expired".
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Whether a row with this expiry is visible at `now`.
fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

fn encode<R: Record>(key: &str, value: &R) -> Result<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Encode {
        kind: R::KIND,
        key: key.to_owned(),
        detail: err.to_string(),
    })
}

fn decode<R: Record>(key: &str, text: &str) -> Result<R> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        kind: R::KIND,
        key: key.to_owned(),
        detail: describe_decode_error(&err),
    })
}

/// serde_json's messages quote the offending value ("invalid type: string
/// \"...\""), which may be a secret, so only the shape of the failure is kept.
fn describe_decode_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!(
            "is not valid JSON (line {}, column {})",
            err.line(),
            err.column()
        ),
        Category::Data => {
            let message = err.to_string();
            // Field names come from our own types, not from the stored data.
            if message.starts_with("missing field `") {
                format!("no longer matches its type: {message}")
            } else {
                format!(
                    "no longer matches its type (line {}, column {})",
                    err.line(),
                    err.column()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
