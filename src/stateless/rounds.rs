//! Multi-round-trip requests over a session-era backend.
//!
//! A session-era server asks its client mid-call (elicitation, sampling,
//! roots). A 2026-07-28 client cannot be asked: it is answered instead with an
//! `input_required` result naming what the server asked, and retries the
//! request with the answers. Meanwhile the backend call is *held* here, still
//! waiting for its client; the retry answers the backend's requests and the
//! call goes on where it was.
//!
//! `requestState` is what ties the retry to the held call. It is sealed
//! (AES-256-GCM, a key made at start) and names the held call, the person,
//! the service, the method, a digest of the parameters and an expiry; a held
//! call can be taken once, so a state replayed after its retry, altered, or
//! presented by someone else is refused. Held calls live in this process:
//! with several instances the retry must reach the same one (sticky routing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pool::Kept;
use crate::caller::UserId;
use crate::jsonrpc::RequestId;
use crate::session::StreamReceiver;
use crate::store::sealed::{Sealed, Sealer};
use std::sync::Arc;

/// How long a held call waits for its retry. A person answering a form takes
/// a while; the backend's own `requestTimeout` still ends the call sooner if
/// it is shorter.
pub const HOLD_FOR: Duration = Duration::from_secs(600);
/// Held calls per process, and per person; beyond either the oldest (the
/// person's own, for the second) is let go and its backend call cancelled, so
/// one person's calls never push out another's.
const MAX_HELD: usize = 10_000;
const MAX_HELD_PER_PERSON: usize = 64;
const AAD: &str = "mcpgate/requestState/v1";

/// One thing the backend asked the client, under the key the client answers it by.
#[derive(Debug, Clone)]
pub struct Asked {
    pub key: String,
    /// The backend's id for its request, answered with the client's result.
    pub backend_id: RequestId,
    pub method: String,
    pub params: Value,
}

/// A backend call waiting for its client's answers.
pub struct Held {
    /// Whose call it is (empty without sign-in).
    pub owner: String,
    pub kept: Arc<Kept>,
    pub rx: StreamReceiver,
    /// The id the backend knows this call by.
    pub internal: RequestId,
    pub asked: Vec<Asked>,
    pub method: String,
    pub expires: Instant,
}

#[derive(Serialize, Deserialize)]
struct State {
    /// The held call.
    h: String,
    /// Person, service, method, digest of the parameters.
    u: String,
    s: String,
    m: String,
    d: String,
    /// Expiry, unix seconds.
    e: i64,
}

/// Why a retry's `requestState` is refused (-32602, the spec's code for it).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "requestState is not one this gateway issued (altered, or from another gateway); send the request again without it"
    )]
    Forged,
    #[error(
        "requestState was issued for another request, person or service; send the request again without it"
    )]
    Mismatch,
    #[error(
        "requestState has expired or was already used; send the request again without requestState and inputResponses"
    )]
    Gone,
}

/// Who and what a state is bound to.
pub struct Binding<'a> {
    pub user: Option<&'a UserId>,
    pub service: &'a str,
    pub method: &'a str,
    pub digest: &'a str,
}

pub struct Rounds {
    sealer: Sealer,
    held: Mutex<HashMap<String, Held>>,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds::new()
    }
}

impl Rounds {
    pub fn new() -> Rounds {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let sealer = match Sealer::new(&[key]) {
            Some(s) => s,
            // Sealer::new only refuses an empty key list.
            None => unreachable!("one key given"),
        };
        Rounds {
            sealer,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `held`; the sealed `requestState` that brings it back.
    pub fn hold(&self, held: Held, bind: &Binding) -> Option<String> {
        let handle = crate::util::random_id();
        let state = State {
            h: handle.clone(),
            u: bind
                .user
                .map(|u| u.as_str().to_string())
                .unwrap_or_default(),
            s: bind.service.to_string(),
            m: bind.method.to_string(),
            d: bind.digest.to_string(),
            e: crate::util::now_unix() + HOLD_FOR.as_secs() as i64,
        };
        let plain = serde_json::to_vec(&state).ok()?;
        let sealed = self.sealer.seal(&plain, AAD).ok()?;
        let text = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&sealed).ok()?);
        let expired = {
            let mut table = self.table();
            let now = Instant::now();
            let mut gone: Vec<Held> = Vec::new();
            let old: Vec<String> = table
                .iter()
                .filter(|(_, h)| h.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                gone.extend(table.remove(&k));
            }
            let oldest = |table: &HashMap<String, Held>, owner: Option<&str>| {
                table
                    .iter()
                    .filter(|(_, h)| owner.is_none_or(|o| h.owner == o))
                    .min_by_key(|(_, h)| h.expires)
                    .map(|(k, _)| k.clone())
            };
            let theirs = table.values().filter(|h| h.owner == held.owner).count();
            if theirs >= MAX_HELD_PER_PERSON
                && let Some(k) = oldest(&table, Some(&held.owner))
            {
                gone.extend(table.remove(&k));
            }
            if table.len() >= MAX_HELD
                && let Some(k) = oldest(&table, None)
            {
                gone.extend(table.remove(&k));
            }
            table.insert(handle, held);
            gone
        };
        for h in expired {
            h.kept
                .cancel(&h.internal, "the client did not retry in time");
        }
        Some(text)
    }

    /// The held call a retry's `requestState` names, taken (once).
    pub fn take(&self, request_state: &str, bind: &Binding) -> Result<Held, StateError> {
        let sealed: Sealed = URL_SAFE_NO_PAD
            .decode(request_state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(StateError::Forged)?;
        let plain = self
            .sealer
            .open(&sealed, AAD)
            .map_err(|_| StateError::Forged)?;
        let state: State = serde_json::from_slice(&plain).map_err(|_| StateError::Forged)?;
        let user = bind.user.map(|u| u.as_str()).unwrap_or_default();
        let same = crate::util::secure_eq(&state.u, user)
            && state.s == bind.service
            && state.m == bind.method
            && state.d == bind.digest;
        if !same {
            return Err(StateError::Mismatch);
        }
        if state.e < crate::util::now_unix() {
            return Err(StateError::Gone);
        }
        self.table().remove(&state.h).ok_or(StateError::Gone)
    }

    /// How many calls wait for a retry (for `/ready` and the tests).
    pub fn count(&self) -> usize {
        self.table().len()
    }
}
