//! The store through both backends (every behaviour tested on memory and on
//! SQLite alike), SQLite file permissions, and parsing `storage` settings.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Thing {
    name: String,
    n: u32,
}

impl Record for Thing {
    const KIND: &'static str = "thing";
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Other {
    name: String,
}

impl Record for Other {
    const KIND: &'static str = "other";
}

fn thing(name: &str, n: u32) -> Thing {
    Thing {
        name: name.to_owned(),
        n,
    }
}

fn past() -> Option<SystemTime> {
    Some(SystemTime::now() - Duration::from_secs(60))
}

fn future() -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_secs(3600))
}

async fn open_sqlite(path: &Path) -> Store {
    Store::open(&StoreSpec::Sqlite(path.to_owned()))
        .await
        .expect("open sqlite store")
}

/// Runs each listed body against a fresh memory store and a fresh SQLite
/// store, so both backends are held to one behaviour.
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $body() {
                    super::$body(&super::Store::memory()).await;
                }
            )*
        }
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $body() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let store = super::open_sqlite(&dir.path().join("store.db")).await;
                    super::$body(&store).await;
                    store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    put_get_overwrite,
    expired_rows_are_invisible,
    insert_new_semantics,
    take_is_single_use_under_concurrency,
    list_is_ordered_and_separated_by_kind,
    purge_expired_counts,
    undecodable_value_is_an_error,
);

async fn put_get_overwrite(store: &Store) {
    assert_eq!(store.get::<Thing>("a").await.unwrap(), None);
    store.put("a", &thing("first", 1), None).await.unwrap();
    assert_eq!(
        store.get::<Thing>("a").await.unwrap(),
        Some(thing("first", 1))
    );
    store.put("a", &thing("second", 2), future()).await.unwrap();
    assert_eq!(
        store.get::<Thing>("a").await.unwrap(),
        Some(thing("second", 2))
    );
    // Overwriting with no expiry clears the old one.
    store.put("a", &thing("third", 3), None).await.unwrap();
    assert_eq!(
        store.get::<Thing>("a").await.unwrap(),
        Some(thing("third", 3))
    );
    assert!(store.delete::<Thing>("a").await.unwrap());
    assert!(!store.delete::<Thing>("a").await.unwrap());
    assert_eq!(store.get::<Thing>("a").await.unwrap(), None);
}

async fn expired_rows_are_invisible(store: &Store) {
    store.put("old", &thing("old", 1), past()).await.unwrap();
    // Expiry is inclusive: a row expiring this very second is already gone.
    store
        .put("now", &thing("now", 2), Some(SystemTime::now()))
        .await
        .unwrap();
    store
        .put("live", &thing("live", 3), future())
        .await
        .unwrap();
    for key in ["old", "now"] {
        assert_eq!(store.get::<Thing>(key).await.unwrap(), None, "{key}");
        assert_eq!(store.take::<Thing>(key).await.unwrap(), None, "{key}");
        assert!(!store.delete::<Thing>(key).await.unwrap(), "{key}");
    }
    assert_eq!(
        store.get::<Thing>("live").await.unwrap(),
        Some(thing("live", 3))
    );
    let listed = store.list::<Thing>().await.unwrap();
    assert_eq!(listed, vec![("live".to_owned(), thing("live", 3))]);
}

async fn insert_new_semantics(store: &Store) {
    // Absent.
    assert!(store.insert_new("k", &thing("a", 1), None).await.unwrap());
    // Present and live: left alone.
    assert!(!store.insert_new("k", &thing("b", 2), None).await.unwrap());
    assert_eq!(store.get::<Thing>("k").await.unwrap(), Some(thing("a", 1)));
    store.put("k", &thing("c", 3), future()).await.unwrap();
    assert!(!store.insert_new("k", &thing("d", 4), None).await.unwrap());
    assert_eq!(store.get::<Thing>("k").await.unwrap(), Some(thing("c", 3)));
    // Present but expired: replaced, expiry included.
    store.put("k", &thing("e", 5), past()).await.unwrap();
    assert!(store.insert_new("k", &thing("f", 6), None).await.unwrap());
    assert_eq!(store.get::<Thing>("k").await.unwrap(), Some(thing("f", 6)));
    assert!(!store.insert_new("k", &thing("g", 7), None).await.unwrap());
    // The same key under another kind is a different record.
    assert!(
        store
            .insert_new(
                "k",
                &Other {
                    name: "o".to_owned()
                },
                None
            )
            .await
            .unwrap()
    );
}

async fn take_is_single_use_under_concurrency(store: &Store) {
    const TAKERS: usize = 16;
    for round in 0..5 {
        let key = format!("code-{round}");
        store
            .put(&key, &thing("code", round), future())
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(TAKERS));
        let tasks: Vec<_> = (0..TAKERS)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take::<Thing>(&key).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(taken) = task.await.expect("task").expect("take") {
                winners.push(taken);
            }
        }
        assert_eq!(winners, vec![thing("code", round)], "round {round}");
        assert_eq!(store.get::<Thing>(&key).await.unwrap(), None);
    }
}

async fn list_is_ordered_and_separated_by_kind(store: &Store) {
    for key in ["b", "a", "c", "B", "aa"] {
        store.put(key, &thing(key, 0), None).await.unwrap();
    }
    let other = Other {
        name: "x".to_owned(),
    };
    store.put("a", &other, None).await.unwrap();
    let keys: Vec<String> = store
        .list::<Thing>()
        .await
        .unwrap()
        .into_iter()
        .map(|(key, value)| {
            assert_eq!(value.name, key);
            key
        })
        .collect();
    // Byte order: upper case before lower case.
    assert_eq!(keys, ["B", "a", "aa", "b", "c"]);
    assert_eq!(
        store.list::<Other>().await.unwrap(),
        vec![("a".to_owned(), other)]
    );
    assert!(store.delete::<Other>("a").await.unwrap());
    assert!(store.list::<Other>().await.unwrap().is_empty());
    assert_eq!(store.list::<Thing>().await.unwrap().len(), 5);
}

async fn purge_expired_counts(store: &Store) {
    store.put("x1", &thing("x", 1), past()).await.unwrap();
    store.put("x2", &thing("x", 2), past()).await.unwrap();
    let other = Other {
        name: "x".to_owned(),
    };
    store.put("x3", &other, past()).await.unwrap();
    store.put("live", &thing("l", 1), future()).await.unwrap();
    store.put("forever", &thing("f", 1), None).await.unwrap();
    assert_eq!(store.purge_expired().await.unwrap(), 3);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(store.list::<Thing>().await.unwrap().len(), 2);
}

async fn undecodable_value_is_an_error(store: &Store) {
    let secret = "s3cr3t-value";
    let wrong_type = format!(r#"{{"name":"{secret}","n":"{secret}"}}"#);
    let cases = [
        ("wrong-type", wrong_type),
        ("missing-field", r#"{"name":"x"}"#.to_owned()),
        ("not-json", format!("{secret} is not json")),
    ];
    for (key, raw) in cases {
        store
            .backend
            .put(Thing::KIND, key, raw, None)
            .await
            .unwrap();
        let err = store.get::<Thing>(key).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { kind: "thing", key: k, .. } if k == key),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("thing") && message.contains(key),
            "{message}"
        );
        assert!(
            !message.contains(secret),
            "leaks the stored value: {message}"
        );
    }
    let message = store
        .get::<Thing>("missing-field")
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("missing field `n`"), "{message}");
    // One bad row fails a listing, naming the row.
    let err = store.list::<Thing>().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // take still consumes the bad row, so it cannot wedge a flow forever.
    assert!(store.take::<Thing>("not-json").await.is_err());
    assert_eq!(
        store.backend.get(Thing::KIND, "not-json").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = open_sqlite(&path).await;
    store.put("kept", &thing("kept", 7), None).await.unwrap();
    store
        .put("later", &thing("later", 8), future())
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let store = open_sqlite(&path).await;
    assert_eq!(
        store.get::<Thing>("kept").await.unwrap(),
        Some(thing("kept", 7))
    );
    assert_eq!(store.list::<Thing>().await.unwrap().len(), 2);
    store.close().await;
}

#[tokio::test]
async fn sqlite_rejects_a_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = Store::open(&StoreSpec::Sqlite(dir.path().to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IsDirectory { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_rejects_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are not the tables you are looking for\n").unwrap();
    let err = Store::open(&StoreSpec::Sqlite(path.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // Left untouched.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "these are not the tables you are looking for\n"
    );

    // The right magic followed by garbage gets past the header check; SQLite
    // itself must refuse it, and the error must still name the file.
    let path = dir.path().join("garbage.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(&path, bytes).unwrap();
    let err = Store::open(&StoreSpec::Sqlite(path.clone()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("deeper").join("store.db");
    let store = open_sqlite(&path).await;
    store.put("a", &thing("a", 1), None).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    store.close().await;
}

#[test]
fn spec_parsing() {
    assert_eq!(StoreSpec::parse("memory"), Ok(StoreSpec::Memory));
    assert_eq!(StoreSpec::parse(" memory "), Ok(StoreSpec::Memory));
    assert_eq!(
        StoreSpec::parse("sqlite:/var/lib/mcpgate/store.db"),
        Ok(StoreSpec::Sqlite("/var/lib/mcpgate/store.db".into()))
    );
    assert_eq!(
        StoreSpec::parse("sqlite:data/store.db"),
        Ok(StoreSpec::Sqlite("data/store.db".into()))
    );
    assert_eq!(
        StoreSpec::Sqlite("/x/y.db".into()).to_string(),
        "sqlite:/x/y.db"
    );
    for bad in [
        "",
        "sqlite:",
        "sqlite::memory:",
        "sqlite:///x.db",
        "redis://h",
        "mem",
    ] {
        assert!(StoreSpec::parse(bad).is_err(), "{bad:?}");
    }
    let err = StoreSpec::parse("postgres://admin:hunter2@db/mcpgate")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("postgres:") && err.contains("not supported yet"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = StoreSpec::parse("mysql://admin:hunter2@db/mcpgate")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"postgres:\" is not supported yet"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
