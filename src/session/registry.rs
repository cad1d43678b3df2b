use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Session, SessionId};
use crate::auth::UserId;
use crate::config::ServiceName;

/// All open sessions, by id.
#[derive(Default)]
pub struct Registry {
    map: RwLock<HashMap<SessionId, Arc<Session>>>,
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
