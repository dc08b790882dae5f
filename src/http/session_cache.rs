//! Live sessions kept in memory after their first lookup: every mini-program request carries a
//! token, and a session never changes once created (no logout yet), so it is read from the
//! database once per process, not once per request. Entries expire with their session.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::SessionRow;

/// Most sessions kept; past this the cache starts over (the database still answers).
const CAPACITY: usize = 50_000;

#[derive(Default, Debug)]
pub struct SessionCache {
    by_token_hash: Mutex<HashMap<String, SessionRow>>,
}

impl SessionCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session for `token_hash` if cached and still live at `now_ms`.
    pub fn get(&self, token_hash: &str, now_ms: i64) -> Option<SessionRow> {
        let map = self.by_token_hash.lock().ok()?;
        map.get(token_hash)
            .filter(|s| s.expires_at > now_ms)
            .cloned()
    }

    pub fn put(&self, token_hash: String, session: SessionRow) {
        if let Ok(mut map) = self.by_token_hash.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(token_hash, session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sessions_are_not_served() {
        let cache = SessionCache::new();
        cache.put(
            "h".into(),
            SessionRow {
                id: 1,
                openid: "o".into(),
                expires_at: 1_000,
            },
        );
        assert_eq!(cache.get("h", 999).map(|s| s.id), Some(1));
        assert!(cache.get("h", 1_000).is_none());
        assert!(cache.get("other", 0).is_none());
    }
}
