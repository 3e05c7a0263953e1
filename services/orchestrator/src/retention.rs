//! Deleting jobs and uploads, and the retention sweeper.
//!
//! A deletion removes the rows in one transaction and queues the objects no other job names in the
//! `object_deletions` outbox of that same transaction; the objects are then removed from storage
//! and their outbox rows dropped. A crash in between leaves the outbox, which the sweeper drains:
//! every deletion finishes, and removing an object twice is harmless.
//!
//! The sweeper runs on every replica but works on one at a time: on PostgreSQL it holds a
//! transaction-scoped advisory lock for the round (like the queue observer); SQLite has a single
//! process. It works in batches, so a round of any size is bounded in memory and resumes where it
//! stopped after a crash (what was done is gone from the database, what was not is still due).

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, TransactionTrait};
use tokio_util::sync::CancellationToken;

use atelier_storage::Storage;

use crate::db::retention::{self as rows, Defaults};
use crate::db::statement;
use crate::domain::now_ms;
use crate::metrics::Metrics;

/// Lock id taken so that one replica at a time sweeps (PostgreSQL).
const SWEEP_LOCK: i64 = 0x0a7e_5eed;

/// How the sweeper works.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Retention of tenants that set none.
    pub defaults: Defaults,
    /// Pause between rounds; zero turns the sweeper off.
    pub every: Duration,
    /// Rows handled per batch.
    pub batch: u64,
}

/// What a round (or a deletion) removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub jobs: u64,
    pub objects: u64,
    pub events: u64,
    pub uploads: u64,
    /// False when another replica held the lock and this one did nothing.
    pub swept: bool,
}

/// Failures of a deletion or sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("storage: {0}")]
    Storage(#[from] atelier_storage::StorageError),
}

/// Removes these queued objects from storage and drops them from the outbox; returns how many.
pub async fn remove_objects(
    db: &DatabaseConnection,
    storage: &Storage,
    metrics: &Metrics,
    keys: &[String],
) -> Result<u64, SweepError> {
    let mut removed = 0;
    for key in keys {
        storage.delete(key).await?;
        rows::deletion_done(db, key).await?;
        removed += 1;
    }
    metrics.removed("objects", removed);
    Ok(removed)
}

/// Drains the whole outbox of objects to remove, a batch at a time.
pub async fn drain(
    db: &DatabaseConnection,
    storage: &Storage,
    metrics: &Metrics,
    batch: u64,
) -> Result<u64, SweepError> {
    let mut removed = 0;
    loop {
        let keys = rows::pending_deletions(db, batch.max(1)).await?;
        removed += remove_objects(db, storage, metrics, &keys).await?;
        if (keys.len() as u64) < batch.max(1) {
            return Ok(removed);
        }
    }
}

/// One round of the sweeper: the outbox left by earlier crashes, then jobs, events and uploads past
/// their tenant's retention. Does nothing (and says so) while another replica sweeps.
pub async fn sweep_once(
    db: &DatabaseConnection,
    storage: &Storage,
    metrics: &Metrics,
    settings: &Settings,
) -> Result<Report, SweepError> {
    let lock = if db.get_database_backend() == DatabaseBackend::Postgres {
        let txn = db.begin().await?;
        let locked = txn
            .query_one(statement(
                DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(?)",
                vec![SWEEP_LOCK.into()],
            ))
            .await?
            .map(|r| r.try_get_by_index::<bool>(0))
            .transpose()?
            .unwrap_or(false);
        if !locked {
            txn.commit().await?;
            return Ok(Report::default());
        }
        Some(txn)
    } else {
        None
    };
    let swept = sweep(db, storage, metrics, settings).await;
    if let Some(txn) = lock {
        // Ending the transaction releases the lock; a crash releases it with the connection.
        txn.commit().await?;
    }
    swept
}

async fn sweep(
    db: &DatabaseConnection,
    storage: &Storage,
    metrics: &Metrics,
    settings: &Settings,
) -> Result<Report, SweepError> {
    let batch = settings.batch.max(1);
    let mut report = Report {
        swept: true,
        ..Report::default()
    };
    report.objects += drain(db, storage, metrics, batch).await?;
    let now = now_ms();
    loop {
        let due = rows::due_jobs(db, settings.defaults, now, batch).await?;
        for (tenant_id, job_id) in &due {
            let txn = db.begin().await?;
            let purged = rows::purge_job(&txn, tenant_id, job_id).await?;
            txn.commit().await?;
            metrics.removed("jobs", 1);
            report.jobs += 1;
            report.objects += remove_objects(db, storage, metrics, &purged.queued).await?;
        }
        if (due.len() as u64) < batch {
            break;
        }
    }
    loop {
        let n = rows::expire_events(db, settings.defaults, now, batch).await?;
        metrics.removed("events", n);
        report.events += n;
        if n < batch {
            break;
        }
    }
    loop {
        let due = rows::due_uploads(db, settings.defaults, now, batch).await?;
        for (tenant_id, upload_id, key) in &due {
            let txn = db.begin().await?;
            rows::purge_upload(&txn, tenant_id, upload_id, key).await?;
            txn.commit().await?;
            metrics.removed("uploads", 1);
            report.uploads += 1;
            report.objects +=
                remove_objects(db, storage, metrics, std::slice::from_ref(key)).await?;
        }
        if (due.len() as u64) < batch {
            break;
        }
    }
    if report.jobs + report.objects + report.events + report.uploads > 0 {
        tracing::info!(
            jobs = report.jobs,
            objects = report.objects,
            events = report.events,
            uploads = report.uploads,
            "retention sweep removed expired data"
        );
    }
    Ok(report)
}

/// Sweeps every `settings.every` until `shutdown`; off when that is zero.
pub async fn run(
    db: DatabaseConnection,
    storage: Storage,
    metrics: Metrics,
    settings: Settings,
    shutdown: CancellationToken,
) {
    if settings.every.is_zero() {
        return;
    }
    loop {
        if let Err(e) = sweep_once(&db, &storage, &metrics, &settings).await {
            tracing::warn!(error = %e, "retention sweep failed; the next round resumes it");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.every) => {}
        }
    }
}
