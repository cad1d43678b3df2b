//! The embedded SQLite backend, the default: one file, created with its
//! directory on first start and migrated on every start.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{Backend, Result, StoreError, unix_now};

/// Schema history, oldest first. Applied migrations are recorded (with a
/// checksum) in `_sqlx_migrations`; never edit a shipped entry, append one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "records",
    "CREATE TABLE records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX records_expires_at ON records (expires_at);",
)];

/// SQLite serializes writers anyway; a few connections let reads proceed
/// while one write is in progress (WAL) without piling up idle handles.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for another writer before reporting "database is
/// locked". Writes here are single small statements, so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// First bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// SQLITE_NOTADB, as `DatabaseError::code` reports it.
const NOT_A_DATABASE: &str = "26";

pub struct SqliteBackend {
    pool: SqlitePool,
    /// For error messages.
    location: String,
}

impl SqliteBackend {
    pub async fn open(path: &Path) -> Result<SqliteBackend> {
        prepare_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers never block the writer and vice versa. Synchronous stays
            // at SQLite's default FULL: a revoked or rotated token must stay
            // revoked after a power cut, and writes are rare enough to afford it.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        // Opens one connection now, which runs the pragmas: a file that is not
        // a database fails here rather than on the first request.
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|err| open_error(path, err))?;
        if let Err(err) = migrator().run(&pool).await {
            pool.close().await;
            return Err(match err {
                sqlx::migrate::MigrateError::Execute(err) => open_error(path, err),
                err => StoreError::Migrate {
                    path: path.to_owned(),
                    source: err,
                },
            });
        }
        tracing::debug!(path = %path.display(), "store opened");
        Ok(SqliteBackend {
            pool,
            location: path.display().to_string(),
        })
    }

    fn failed(
        &self,
        op: &'static str,
        kind: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> StoreError {
        let location = self.location.clone();
        move |source| StoreError::Query {
            op,
            kind,
            location,
            source,
        }
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

fn open_error(path: &Path, err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some(NOT_A_DATABASE)
    {
        return StoreError::NotADatabase {
            path: path.to_owned(),
        };
    }
    StoreError::Open {
        path: path.to_owned(),
        source: err,
    }
}

/// Makes sure `path` is an SQLite file or an empty one, creating it (and its
/// directory) owner-only so the tokens in it are never world-readable, even
/// for a moment. SQLite gives its -wal and -shm files the same mode.
fn prepare_file(path: &Path) -> Result<()> {
    let io_error = |action: &'static str, at: &Path| {
        let at: PathBuf = at.to_owned();
        move |source| StoreError::Io {
            action,
            path: at,
            source,
        }
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(StoreError::IsDirectory {
                path: path.to_owned(),
            });
        }
        Ok(meta) => {
            if !looks_like_sqlite(path).map_err(io_error("read the store file", path))? {
                return Err(StoreError::NotADatabase {
                    path: path.to_owned(),
                });
            }
            warn_if_shared(path, &meta);
            return Ok(());
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(io_error("access the store file", path)(err)),
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        let mut builder = DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(io_error("create the store directory", dir))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {
            tracing::info!(path = %path.display(), "created the store file");
            Ok(())
        }
        // Someone else created it between our look and our create; SQLite
        // will judge its contents.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io_error("create the store file", path)(err)),
    }
}

/// An empty file is a database SQLite has yet to write; anything else must
/// start with the SQLite header. Checked before SQLite sees the file, so a
/// stray file (a config, a key) is refused without ever being opened for
/// writing; SQLite's own SQLITE_NOTADB (see `open_error`) covers the rest.
fn looks_like_sqlite(path: &Path) -> std::io::Result<bool> {
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    File::open(path)?
        .take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut head)?;
    Ok(head.is_empty() || head == SQLITE_HEADER)
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "the store file is accessible to other users; `chmod 600` it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _meta: &std::fs::Metadata) {}

// The statements below are the whole contract a SQL backend has to meet; a
// PostgreSQL backend needs the same statements with `$n` placeholders (and
// `COLLATE "C"` on the list ordering, to match SQLite's byte order).

impl Backend for SqliteBackend {
    fn put<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
        value: String,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO records (kind, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET value = excluded.value, expires_at = excluded.expires_at",
            )
            .bind(kind)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(self.failed("put", kind))?;
            Ok(())
        })
    }

    fn insert_new<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
        value: String,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            // One statement, so no other writer can slip in between the
            // existence check and the write; a conflicting live row makes the
            // DO UPDATE a no-op and the affected count 0.
            let done = sqlx::query(
                "INSERT INTO records (kind, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET value = excluded.value, expires_at = excluded.expires_at
                 WHERE records.expires_at IS NOT NULL AND records.expires_at <= ?5",
            )
            .bind(kind)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .bind(unix_now())
            .execute(&self.pool)
            .await
            .map_err(self.failed("insert", kind))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn get<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT value FROM records
                 WHERE kind = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )
            .bind(kind)
            .bind(key)
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed("get", kind))?;
            row.map(|row| row.try_get::<String, _>(0))
                .transpose()
                .map_err(self.failed("get", kind))
        })
    }

    fn take<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            // A single DELETE ... RETURNING is atomic: SQLite runs writers one
            // at a time, and the second writer finds the row already gone.
            // fetch_all steps the statement to completion, so the delete is
            // committed before the connection goes back to the pool.
            let rows = sqlx::query(
                "DELETE FROM records
                 WHERE kind = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)
                 RETURNING value",
            )
            .bind(kind)
            .bind(key)
            .bind(unix_now())
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("take", kind))?;
            rows.first()
                .map(|row| row.try_get::<String, _>(0))
                .transpose()
                .map_err(self.failed("take", kind))
        })
    }

    fn delete<'a>(&'a self, kind: &'static str, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "DELETE FROM records WHERE kind = ?1 AND key = ?2
                 RETURNING (expires_at IS NULL OR expires_at > ?3)",
            )
            .bind(kind)
            .bind(key)
            .bind(unix_now())
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("delete", kind))?;
            match rows.first() {
                Some(row) => row
                    .try_get::<bool, _>(0)
                    .map_err(self.failed("delete", kind)),
                None => Ok(false),
            }
        })
    }

    fn list(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT key, value FROM records
                 WHERE kind = ?1 AND (expires_at IS NULL OR expires_at > ?2)
                 ORDER BY key",
            )
            .bind(kind)
            .bind(unix_now())
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("list", kind))?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(self.failed("list", kind))
        })
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            )
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.failed("purge", "expired"))?;
            Ok(done.rows_affected())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}
