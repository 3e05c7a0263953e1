//! Wakes watchers when a job has new stored events. The database is the source of truth: a wake-up
//! only says "look again", so a watcher that misses one (lag) just reads the log once more.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::db::events::{CANCEL_CHANNEL, EVENTS_CHANNEL};
use crate::dispatch::DispatchHandle;

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

    /// A receiver of wake-ups; subscribe before reading the log so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// Follows PostgreSQL notifications so that this replica's watchers see events recorded by other
/// replicas, and attempts running here stop when another replica cancels their task. Runs until
/// `shutdown`.
pub async fn listen_postgres(
    pool: sqlx::PgPool,
    bus: EventBus,
    dispatch: DispatchHandle,
    shutdown: CancellationToken,
) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener
                .listen_all([EVENTS_CHANNEL, CANCEL_CHANNEL])
                .await?;
            loop {
                // recv() reconnects by itself; watchers re-read the log on their own timer, so
                // a notification lost in a reconnect only delays them.
                let n = listener.recv().await?;
                match n.channel() {
                    EVENTS_CHANNEL => bus.notify(n.payload()),
                    CANCEL_CHANNEL => dispatch.cancel(&[n.payload().to_string()]),
                    _ => {}
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = listener => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "PostgreSQL listener failed; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
