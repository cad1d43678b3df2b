//! The in-memory backend: for tests and for deployments that accept losing
//! every token and registration on restart.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;

use super::{Backend, Result, is_live, unix_now};

type Rows = BTreeMap<(&'static str, String), Row>;

struct Row {
    value: String,
    expires_at: Option<i64>,
}

/// Every operation is one short critical section, which is what makes
/// `take` and `insert_new` atomic; nothing awaits while the lock is held.
/// The work runs when the returned future is polled, as with the SQL
/// backends, not when the method is called.
#[derive(Default)]
pub struct MemoryBackend {
    rows: Mutex<Rows>,
}

impl MemoryBackend {
    fn rows(&self) -> MutexGuard<'_, Rows> {
        // Each critical section leaves the map consistent before anything can
        // panic, so a poisoned lock still guards good data.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn put<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
        value: String,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.rows()
                .insert((kind, key.to_owned()), Row { value, expires_at });
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
            let now = unix_now();
            let mut rows = self.rows();
            let inserted = match rows.entry((kind, key.to_owned())) {
                Entry::Vacant(vacant) => {
                    vacant.insert(Row { value, expires_at });
                    true
                }
                Entry::Occupied(occupied) if is_live(occupied.get().expires_at, now) => false,
                Entry::Occupied(mut occupied) => {
                    occupied.insert(Row { value, expires_at });
                    true
                }
            };
            Ok(inserted)
        })
    }

    fn get<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let now = unix_now();
            let value = self
                .rows()
                .get(&(kind, key.to_owned()))
                .filter(|row| is_live(row.expires_at, now))
                .map(|row| row.value.clone());
            Ok(value)
        })
    }

    fn take<'a>(
        &'a self,
        kind: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let now = unix_now();
            let mut rows = self.rows();
            let id = (kind, key.to_owned());
            // An expired row stays for purge_expired, as in the SQL backends.
            let value = match rows.get(&id) {
                Some(row) if is_live(row.expires_at, now) => rows.remove(&id).map(|row| row.value),
                _ => None,
            };
            Ok(value)
        })
    }

    fn delete<'a>(&'a self, kind: &'static str, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = unix_now();
            let removed = self.rows().remove(&(kind, key.to_owned()));
            Ok(removed.is_some_and(|row| is_live(row.expires_at, now)))
        })
    }

    fn list(&self, kind: &'static str) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        Box::pin(async move {
            let now = unix_now();
            let listed = self
                .rows()
                .range((kind, String::new())..)
                .take_while(|((row_kind, _), _)| *row_kind == kind)
                .filter(|(_, row)| is_live(row.expires_at, now))
                .map(|((_, key), row)| (key.clone(), row.value.clone()))
                .collect();
            Ok(listed)
        })
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let mut rows = self.rows();
            let before = rows.len();
            rows.retain(|_, row| is_live(row.expires_at, now));
            Ok((before - rows.len()) as u64)
        })
    }
}
