//! The fetcher's memory: results (documents and refusals) by client ID, each
//! with its own lifetime, bounded in number because client IDs are chosen by
//! whoever calls `/authorize`. When full, expired entries go first, then the
//! oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ClientMetadata;
use crate::oauth::error::OAuthError;

/// Bounds memory: client IDs are chosen by whoever calls `/authorize`.
const MAX_CACHE_ENTRIES: usize = 1000;

struct CacheEntry {
    inserted: Instant,
    expires: Instant,
    result: Result<ClientMetadata, OAuthError>,
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl Cache {
    pub fn get(&self, client_id: &str) -> Option<Result<ClientMetadata, OAuthError>> {
        let cache = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(client_id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.result.clone())
    }

    pub fn remember(
        &self,
        client_id: &str,
        result: &Result<ClientMetadata, OAuthError>,
        ttl: Duration,
    ) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES && !cache.contains_key(client_id) {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_CACHE_ENTRIES {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            client_id.to_owned(),
            CacheEntry {
                inserted: now,
                expires: now + ttl,
                result: result.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    fn refusal(n: usize) -> Result<ClientMetadata, OAuthError> {
        Err(OAuthError::new(ErrorCode::InvalidClient, format!("no {n}")))
    }

    #[test]
    fn entries_expire_and_zero_means_not_kept() {
        let cache = Cache::default();
        cache.remember("a", &refusal(1), Duration::from_secs(60));
        assert_eq!(
            cache.get("a").map(|r| r.unwrap_err().description),
            Some("no 1".into())
        );
        cache.remember("b", &refusal(2), Duration::ZERO);
        assert!(cache.get("b").is_none());
        cache.remember("c", &refusal(3), Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(cache.get("c").is_none());
    }

    #[test]
    fn a_full_cache_drops_the_oldest() {
        let cache = Cache::default();
        for i in 0..MAX_CACHE_ENTRIES {
            cache.remember(&i.to_string(), &refusal(i), Duration::from_secs(60));
        }
        cache.remember("new", &refusal(0), Duration::from_secs(60));
        assert!(cache.get("0").is_none(), "the oldest went");
        assert!(cache.get("1").is_some());
        assert!(cache.get("new").is_some());
        assert_eq!(cache.entries.lock().unwrap().len(), MAX_CACHE_ENTRIES);
    }
}
