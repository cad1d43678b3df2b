//! Fixed-window request limits per key (client IP address, or an account for
//! password attempts). In memory: each gateway instance limits on its own, which
//! is what a brute-force limit needs (a shared store would add a round trip to
//! every request for little gain).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::auth::AuthSettings;

pub struct Limiter {
    /// What is limited, for the log line a refusal leaves.
    name: &'static str,
    /// Whether reaching the limit leaves a log line (not for log budgets).
    log_refusals: bool,
    per_window: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Most keys remembered; beyond that, expired windows are dropped first.
const MAX_KEYS: usize = 100_000;

impl Limiter {
    pub fn new(name: &'static str, per_window: u32, window: Duration) -> Limiter {
        Limiter {
            name,
            log_refusals: true,
            per_window,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// A limit on log lines, not requests: reaching it is silent.
    pub fn log_budget(name: &'static str, per_window: u32, window: Duration) -> Limiter {
        Limiter {
            log_refusals: false,
            ..Limiter::new(name, per_window, window)
        }
    }

    /// Count one request; `Err(retry_after)` when the key is over its limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return Ok(());
        };
        if counts.len() >= MAX_KEYS {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
            if counts.len() >= MAX_KEYS {
                counts.clear();
            }
        }
        let entry = counts.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            let start = entry.0;
            self.note_refusal(key, &mut entry.1);
            return Err(self.window.saturating_sub(now.duration_since(start)));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Whether the key is over its limit, without counting a request: for
    /// limits that count only failures (see [`Limiter::record`]).
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock().ok()?;
        let (start, n) = counts.get_mut(key)?;
        let elapsed = now.duration_since(*start);
        if elapsed >= self.window || *n < self.per_window {
            return None;
        }
        self.note_refusal(key, n);
        Some(self.window.saturating_sub(elapsed))
    }

    /// One log line per key and window when a key is first refused, so a
    /// flood cannot flood the log (`n` then counts past the limit).
    fn note_refusal(&self, key: &str, n: &mut u32) {
        if *n == self.per_window && self.log_refusals {
            tracing::warn!(
                limit = self.name,
                key,
                per_window = self.per_window,
                window_s = self.window.as_secs(),
                "rate limit reached: refused with 429 until the window ends"
            );
        }
        *n = n.saturating_add(1).max(self.per_window + 1);
    }

    /// Count one failure; the first one over the limit is logged.
    pub fn record(&self, key: &str) {
        let _ = self.check(key);
    }

    /// Forget a key (a successful sign-in clears its failed attempts).
    pub fn reset(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.remove(key);
        }
    }
}

pub struct Limits {
    pub token: Limiter,
    pub register: Limiter,
    /// Password attempts per client IP.
    pub login: Limiter,
    /// Failed password attempts per account, so spreading a guess over many
    /// addresses does not help.
    pub login_account: Limiter,
    /// Failed grants (unknown, used or mismatched codes; bad client
    /// credentials) per client IP and per client id: legitimate clients
    /// rarely fail, so guessing stops after a few tries while a busy
    /// client's successful requests are never counted here.
    pub failed_grant_ip: Limiter,
    pub failed_grant_client: Limiter,
    /// Log lines for refused access tokens per client IP, so a client
    /// retrying a bad token cannot flood the log.
    pub refused_token_log: Limiter,
}

/// Failed grants allowed per client IP, and per client id, in
/// [`FAILED_GRANT_WINDOW`].
pub const FAILED_GRANTS: u32 = 10;
pub const FAILED_GRANT_WINDOW: Duration = Duration::from_secs(10 * 60);

impl Limits {
    pub fn new(s: &AuthSettings) -> Limits {
        let minute = Duration::from_secs(60);
        Limits {
            token: Limiter::new("token requests per IP", s.rate_token, minute),
            register: Limiter::new("registrations per IP", s.rate_register, minute),
            login: Limiter::new("password attempts per IP", s.rate_login, minute),
            login_account: Limiter::new(
                "failed password attempts per account",
                s.rate_login,
                Duration::from_secs(15 * 60),
            ),
            failed_grant_ip: Limiter::new(
                "failed grants per IP",
                FAILED_GRANTS,
                FAILED_GRANT_WINDOW,
            ),
            failed_grant_client: Limiter::new(
                "failed grants per client",
                FAILED_GRANTS,
                FAILED_GRANT_WINDOW,
            ),
            refused_token_log: Limiter::log_budget("refused token log lines per IP", 10, minute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let l = Limiter::new("test", 2, Duration::from_millis(200));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_err());
        assert!(l.check("b").is_ok(), "another key has its own count");
        std::thread::sleep(Duration::from_millis(220));
        assert!(l.check("a").is_ok(), "a new window starts");
        l.reset("a");
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
    }

    #[test]
    fn failures_only_count_when_recorded() {
        let l = Limiter::new("test", 2, Duration::from_secs(60));
        assert_eq!(l.blocked("c"), None, "nothing recorded yet");
        l.record("c");
        assert_eq!(l.blocked("c"), None);
        l.record("c");
        assert!(l.blocked("c").is_some(), "two failures reach the limit");
        assert!(l.blocked("d").is_none(), "another key has its own count");
        // Further failures keep it blocked (and are logged once).
        l.record("c");
        l.record("c");
        assert!(l.blocked("c").is_some());
    }
}

/// The client's address for rate limiting: the TCP peer, or, when the peer is a
/// trusted proxy, the first untrusted address of `X-Forwarded-For` counted from
/// the right (entries further left are the client's own claims).
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::config::IpRange],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

#[cfg(test)]
mod client_ip_tests {
    use super::*;
    use crate::config::IpRange;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap()];
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap(),
        );
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: std::net::IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "1.2.3.4".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger,
            "anyone else's header is ignored"
        );
        assert_eq!(
            client_ip(proxy, &axum::http::HeaderMap::new(), &trusted),
            proxy
        );
    }
}
