//! Coalescing: identical tasks in flight at once on this processor run once. The first becomes the
//! leader; the others wait until the leader is done (stored its result, failed or was cancelled) and
//! then look in the cache again: a hit is served, a miss (the leader failed) makes one of them lead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// The in-process map of keys being worked on.
#[derive(Debug, Default)]
pub struct Inflight {
    next_id: AtomicU64,
    running: Mutex<HashMap<String, (u64, watch::Receiver<()>)>>,
}

/// What a task does about its key.
#[derive(Debug)]
pub enum Turn {
    /// Nobody is working on it: run, store, then drop the guard.
    Lead(LeaderGuard),
    /// Someone is: wait with [`Waiter::done`], then look again.
    Wait(Waiter),
}

/// Held by the task running a key; dropping it wakes the waiters.
#[derive(Debug)]
pub struct LeaderGuard {
    inflight: Arc<Inflight>,
    key: String,
    id: u64,
    _done: watch::Sender<()>,
}

/// A follower's wait for the leader.
#[derive(Debug)]
pub struct Waiter(watch::Receiver<()>);

impl Waiter {
    /// Resolves when the leader is done, whatever the outcome.
    pub async fn done(mut self) {
        // Nothing is ever sent: the only wake-up is the leader's sender being dropped.
        while self.0.changed().await.is_ok() {}
    }
}

impl Inflight {
    /// Leads `key` if nobody does, else waits for the one who does.
    pub fn join(self: &Arc<Self>, key: &str) -> Turn {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, done)) = running.get(key) {
            if done.has_changed().is_ok() {
                return Turn::Wait(Waiter(done.clone()));
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(());
        running.insert(key.to_string(), (id, rx));
        Turn::Lead(LeaderGuard {
            inflight: Arc::clone(self),
            key: key.to_string(),
            id,
            _done: tx,
        })
    }

    /// Keys being worked on now.
    pub fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is being worked on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        let mut running = self
            .inflight
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if running.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            running.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wake_when_the_leader_is_done() {
        let inflight = Arc::new(Inflight::default());
        let Turn::Lead(guard) = inflight.join("k") else {
            panic!("the first leads")
        };
        let Turn::Wait(waiter) = inflight.join("k") else {
            panic!("the second waits")
        };
        assert!(matches!(inflight.join("other"), Turn::Lead(_)));
        let waiting = tokio::spawn(waiter.done());
        drop(guard);
        waiting.await.expect("woken");
        assert!(inflight.is_empty());
        assert!(matches!(inflight.join("k"), Turn::Lead(_)));
    }
}
