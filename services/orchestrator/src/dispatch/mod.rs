//! Dispatch: claim runnable tasks, run each attempt on a processor, keep its lease alive, and sweep
//! tasks whose lease expired or that waited in the queue too long.

mod processors;
mod record;
mod runner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use processors::Processors;

use crate::db;
use crate::events::EventBus;
use crate::health::DatabaseState;

/// Most tasks claimed in one transaction.
const CLAIM_BATCH: usize = 16;
/// How long a woken dispatcher waits for more work to arrive before it claims, so a burst of
/// submits costs one claim instead of one each.
const GATHER: Duration = Duration::from_millis(2);

/// Settings of dispatch: this replica's name and concurrency, and the task timing it shares with the
/// rest of the replica.
#[derive(Clone, Debug)]
pub struct DispatchSettings {
    /// This replica's name in leases.
    pub owner: String,
    /// Attempts run at once by this replica.
    pub concurrency: usize,
    pub timing: crate::config::TaskTiming,
}

/// What the API needs from dispatch: wake it up and stop attempts of cancelled tasks.
#[derive(Clone, Default)]
pub struct DispatchHandle {
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl DispatchHandle {
    /// New work is queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the attempts of these tasks if they run here (their processor streams are dropped).
    pub fn cancel(&self, task_ids: &[String]) {
        if let Ok(running) = self.running.lock() {
            for id in task_ids {
                if let Some(token) = running.get(id) {
                    token.cancel();
                }
            }
        }
    }

    fn register(&self, task_id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            running.insert(task_id.to_string(), token.clone());
        }
        token
    }

    /// Whether an attempt of this task runs on this replica now.
    fn is_running(&self, task_id: &str) -> bool {
        self.running
            .lock()
            .is_ok_and(|running| running.contains_key(task_id))
    }

    fn unregister(&self, task_id: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(task_id);
        }
    }
}

/// An attempt's place in this replica's concurrency. It is held while a processor works on the
/// attempt, then traded for a place among the ends waiting to be written: the next task starts while
/// this one's end is written (with other ends, in one transaction), and at most `concurrency` ends
/// wait at once, so a slow database holds new attempts back instead of piling ends up in memory.
pub(crate) struct Slot {
    running: OwnedSemaphorePermit,
    settling: Arc<Semaphore>,
}

impl Slot {
    /// Frees the running place once a place among the waiting ends is had.
    async fn settle(self) -> Option<OwnedSemaphorePermit> {
        let settling = self.settling.acquire_owned().await.ok();
        drop(self.running);
        settling
    }
}

/// The dispatch loop of one replica.
pub struct Dispatcher {
    db: DatabaseConnection,
    bus: EventBus,
    handle: DispatchHandle,
    processors: Processors,
    settings: DispatchSettings,
    metrics: crate::metrics::Metrics,
    /// Whether the database answers, as the health watcher last saw it.
    database: DatabaseState,
    /// Writes the ends of attempts, several in one transaction when they come together.
    recorder: record::Recorder,
}

impl Dispatcher {
    /// A dispatcher over the shared database and processors.
    pub fn new(
        db: DatabaseConnection,
        bus: EventBus,
        handle: DispatchHandle,
        processors: Processors,
        settings: DispatchSettings,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            recorder: record::Recorder::start(db.clone()),
            db,
            bus,
            handle,
            processors,
            settings,
            metrics,
            database: DatabaseState::default(),
        }
    }

    /// Follows this view of the database's health instead of assuming it always answers.
    pub fn with_database_state(mut self, database: DatabaseState) -> Self {
        self.database = database;
        self
    }

    /// Runs until `shutdown`, then lets running attempts finish within the grace period and hands the
    /// rest back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        if this.settings.concurrency == 0 {
            // An API-only replica: it still takes back expired leases, but runs nothing itself.
            this.sweep(shutdown).await;
            return;
        }
        let slots = Arc::new(Semaphore::new(this.settings.concurrency));
        let settling = Arc::new(Semaphore::new(this.settings.concurrency));
        let hard_stop = CancellationToken::new();
        let mut attempts = JoinSet::new();
        let sweeper = tokio::spawn(this.clone().sweep(shutdown.clone()));
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            // Claim as many tasks as there are free slots, in one transaction.
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let wanted = permits.len();
            match this.claim(wanted as u64).await {
                Ok(leases) if !leases.is_empty() => {
                    let full = leases.len() == wanted;
                    for (lease, permit) in leases.into_iter().zip(permits.drain(..)) {
                        let cancel = this.handle.register(&lease.task.id);
                        let this = this.clone();
                        let hard_stop = hard_stop.clone();
                        let slot = Slot {
                            running: permit,
                            settling: settling.clone(),
                        };
                        attempts.spawn(async move {
                            let task_id = lease.task.id.clone();
                            this.clone()
                                .run_attempt(lease, slot, cancel, hard_stop)
                                .await;
                            this.handle.unregister(&task_id);
                        });
                    }
                    // Every slot asked for was filled: more work may wait, look at once. Fewer:
                    // the queue is empty for now, and the next submit or end wakes this loop.
                    if full {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming tasks failed"),
            }
            drop(permits);
            // Reap finished attempts so the set does not grow.
            while attempts.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.handle.wake.notified() => {
                    // Let the submits and ends arriving together gather, so one claim takes them.
                    tokio::time::sleep(GATHER).await;
                }
                _ = tokio::time::sleep(this.settings.timing.poll) => {}
            }
        }
        tracing::info!(
            running = attempts.len(),
            "dispatch stopping; waiting for running attempts"
        );
        let drained = tokio::time::timeout(this.settings.timing.shutdown_grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            hard_stop.cancel();
            while attempts.join_next().await.is_some() {}
        }
        sweeper.abort();
    }

    async fn claim(&self, limit: u64) -> Result<Vec<db::tasks::Lease>, sea_orm::DbErr> {
        let txn = self.db.begin().await?;
        let leases = crate::jobs::lifecycle::claim(
            &txn,
            &self.settings.owner,
            lease_ms(&self.settings),
            limit,
        )
        .await?;
        txn.commit().await?;
        for lease in &leases {
            self.bus.notify(&lease.job.id);
        }
        Ok(leases)
    }

    /// Re-queues tasks whose lease expired and fails tasks that waited too long; every replica runs it,
    /// and each change is guarded, so two sweepers never apply the same one twice.
    async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.settings.timing.lease / 2).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "sweep failed");
            }
        }
    }

    async fn sweep_once(&self) -> Result<(), sea_orm::DbErr> {
        for task in db::tasks::expired(&self.db, 100).await? {
            // Its lease lapsed because the database was away, not because this replica died: the
            // attempt here still records its end (see `settle_until_recorded`).
            if self.handle.is_running(&task.id) {
                continue;
            }
            if task.lease_owner.as_deref() == Some(db::tasks::EXTERNAL_OWNER) {
                // A worker outside Atelier held it to the attempt's deadline without reporting its
                // end: the attempt timed out, as one on a processor would have.
                let txn = self.db.begin().await?;
                let timed_out = crate::jobs::lifecycle::time_out(
                    &txn,
                    &task,
                    "the worker outside Atelier that took the task did not report its result before the attempt's deadline",
                )
                .await?;
                txn.commit().await?;
                if timed_out {
                    tracing::warn!(task_id = %task.id, job_id = %task.job_id, "an outside worker's task timed out");
                    self.bus.notify(&task.job_id);
                }
                continue;
            }
            let txn = self.db.begin().await?;
            let recovered =
                crate::jobs::lifecycle::recover(&txn, &task, self.settings.timing.max_attempts)
                    .await?;
            txn.commit().await?;
            if recovered {
                tracing::warn!(task_id = %task.id, job_id = %task.job_id, "lease expired; task taken back");
                self.bus.notify(&task.job_id);
                self.handle.wake();
            }
        }
        let cutoff = crate::domain::now_ms()
            - i64::try_from(self.settings.timing.queue_timeout.as_millis()).unwrap_or(i64::MAX);
        for task in db::tasks::stale_queued(&self.db, cutoff, 100).await? {
            let txn = self.db.begin().await?;
            let message = format!(
                "the task waited in the queue longer than {} s",
                self.settings.timing.queue_timeout.as_secs()
            );
            let timed_out = crate::jobs::lifecycle::time_out(&txn, &task, &message).await?;
            txn.commit().await?;
            if timed_out {
                self.bus.notify(&task.job_id);
            }
        }
        for task in db::tasks::past_deadline(&self.db, 100).await? {
            let txn = self.db.begin().await?;
            let timed_out = crate::jobs::lifecycle::time_out(
                &txn,
                &task,
                "the job's deadline passed before the task finished",
            )
            .await?;
            txn.commit().await?;
            if timed_out {
                self.handle.cancel(std::slice::from_ref(&task.id));
                self.bus.notify(&task.job_id);
            }
        }
        Ok(())
    }
}

fn lease_ms(settings: &DispatchSettings) -> i64 {
    i64::try_from(settings.timing.lease.as_millis()).unwrap_or(30_000)
}
