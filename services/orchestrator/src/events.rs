//! Wakes watchers when a job has new stored events. The database is the source of truth: a wake-up
//! only says "look again", so a watcher that misses one (lag) just reads the log once more.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Fan-out of "job X has new events" to every watcher of this replica.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with room for bursts of wake-ups.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    /// Says that the job has new events.
    pub fn notify(&self, job_id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(Arc::from(job_id));
    }

    /// A live-only event of a job (progress): its watchers on this replica are woken.
    pub fn publish(&self, job_id: &str, _event: atelier_proto::v1::JobEvent) {
        self.notify(job_id);
    }

    /// A receiver of wake-ups; subscribe before reading the log so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}
