//! Drains: apps on this host that the balancers should stop sending new
//! requests to, and why (`sitec restart`, an apply about to restart the
//! app: `ops::drain` is the operator's end). A drain is announced in every
//! heartbeat (`AppState::drain`) and the balancers hold the runner out of
//! rotation while it lasts; the requests they already sent finish. It
//! lapses on its own after its time to live unless renewed, so an operator
//! that dies mid-restart never leaves a runner out for good. Kept in memory
//! only: an agent that restarts forgets its drains.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Drains {
    apps: Mutex<BTreeMap<String, (String, Instant)>>,
}

impl Drains {
    /// Drains `app` for `ttl` (from now), saying `why`.
    pub fn set(&self, app: &str, why: &str, ttl: Duration) {
        self.lock()
            .insert(app.to_string(), (why.to_string(), Instant::now() + ttl));
    }

    /// Ends `app`'s drain; whether it had one.
    pub fn clear(&self, app: &str) -> bool {
        self.lock().remove(app).is_some()
    }

    /// Why `app` is drained, if it is (a lapsed drain is forgotten).
    pub fn why(&self, app: &str) -> Option<String> {
        let mut apps = self.lock();
        let now = Instant::now();
        apps.retain(|_, (_, until)| *until > now);
        apps.get(app).map(|(why, _)| why.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Instant)>> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_lasts_until_cleared_or_lapsed() {
        let drains = Drains::default();
        drains.set("blog", "restart by alice", Duration::from_secs(60));
        drains.set("shop", "restart by bob", Duration::ZERO);
        assert_eq!(drains.why("blog").as_deref(), Some("restart by alice"));
        assert_eq!(drains.why("shop"), None, "lapsed");
        assert!(drains.clear("blog"));
        assert!(!drains.clear("blog"));
        assert_eq!(drains.why("blog"), None);
    }
}
