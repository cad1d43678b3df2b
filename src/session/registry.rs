use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Session, SessionId};
use crate::caller::UserId;
use crate::config::ServiceName;

/// All open sessions, by id.
#[derive(Default)]
pub struct Registry {
    map: RwLock<HashMap<SessionId, Arc<Session>>>,
    /// Sessions being opened, per service and person, not yet in `map`: counted
    /// against the per-person limit so parallel `initialize`s cannot overshoot it.
    opening: std::sync::Mutex<HashMap<(ServiceName, UserId), usize>>,
}

/// A place held for a session being opened; released when dropped (by then the
/// session is registered, or failed).
pub struct Reservation {
    registry: Arc<Registry>,
    key: (ServiceName, UserId),
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut opening = self
            .registry
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = opening.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                opening.remove(&self.key);
            }
        }
    }
}

impl Registry {
    /// A session of this service with this id, opened by this caller. A session
    /// of another service or another person is reported as unknown: ids must not
    /// work across services or users.
    pub fn get(
        &self,
        id: &str,
        service: &ServiceName,
        caller: Option<&UserId>,
    ) -> Option<Arc<Session>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|s| &s.service.name == service && !s.is_closed() && s.owner.as_ref() == caller)
            .cloned()
    }

    pub(super) fn insert(&self, session: Arc<Session>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(session.id.clone(), session);
    }

    pub(super) fn remove(&self, id: &SessionId) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// Hold a place for one more session of this person on this service, unless
    /// they are at `max` (open and being opened); `Err` carries how many they have.
    pub fn reserve(
        self: &Arc<Self>,
        service: &ServiceName,
        owner: &UserId,
        max: usize,
    ) -> Result<Reservation, usize> {
        let key = (service.clone(), owner.clone());
        let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let have = self.count_for(service, owner) + opening.get(&key).copied().unwrap_or(0);
        if have >= max {
            return Err(have);
        }
        *opening.entry(key.clone()).or_default() += 1;
        Ok(Reservation {
            registry: self.clone(),
            key,
        })
    }

    /// Open sessions of one person on one service.
    pub fn count_for(&self, service: &ServiceName, owner: &UserId) -> usize {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|s| {
                &s.service.name == service && s.owner.as_ref() == Some(owner) && !s.is_closed()
            })
            .count()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
