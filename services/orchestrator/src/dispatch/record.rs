//! Ends of attempts written together: attempts of one replica that end at about the same time share
//! one transaction, so a busy replica commits once for many tasks instead of once per task.
//!
//! Each end is still its own guarded change (a lost lease writes nothing), applied in job-id order so
//! two replicas writing batches lock jobs in the same order. When a batch fails, each of its ends is
//! written again alone, so one bad end never holds the others back and each caller sees its own
//! error (an unavailable database is retried by the caller, see `settle_until_recorded`).

use std::sync::Arc;

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::db::tasks::{Lease, Outcome};
use crate::db::usage;
use crate::jobs::lifecycle::{self, Reported, Shortfall};

/// Most ends written in one transaction.
const MAX_BATCH: usize = 32;
/// How long the first end of a batch waits for others to join it.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// How an attempt ended, decided before it is written (retry time and shortfall included, so every
/// try of the write writes the same).
#[derive(Clone, Debug)]
pub(super) enum End {
    Succeeded {
        outputs: Vec<pb::Output>,
        from_cache: bool,
        shortfall: Option<Shortfall>,
    },
    Failed {
        failure: pb::Failure,
        retry_at: Option<i64>,
    },
    /// Back to the queue without spending the attempt.
    HandBack {
        run_after: i64,
        /// Whether what the attempt used upstream is recorded (a processor at capacity used nothing).
        with_usage: bool,
    },
    /// The attempt is no longer this replica's: only its upstream usage is recorded.
    Lost,
}

/// One attempt's end with everything it writes.
#[derive(Debug)]
pub(super) struct Settlement {
    pub lease: Lease,
    pub end: End,
    /// The attempt's run id: recording its usage again changes nothing.
    pub run: String,
    pub usage: Vec<pb::ProviderUsage>,
    pub reports: Reported,
}

impl Settlement {
    /// The end as a plain success ([`lifecycle::succeed_all`]): outputs, nothing from the cache, no
    /// failed unit, not a studio job's task (whose success also writes its pair).
    fn plain_success(&self) -> Option<lifecycle::PlainSuccess<'_>> {
        match &self.end {
            End::Succeeded {
                outputs,
                from_cache: false,
                shortfall: None,
            } if !crate::db::studio::may_be_studio(self.lease.job.kind) => {
                Some(lifecycle::PlainSuccess {
                    lease: &self.lease,
                    reported: &self.reports,
                    outputs,
                })
            }
            _ => None,
        }
    }

    /// Writes the end and, in the same transaction, what the attempt's provider calls used (the
    /// calls were made, whether the attempt is still ours or not).
    async fn apply<C: ConnectionTrait>(&self, db: &C) -> Result<Outcome, DbErr> {
        let (lease, reports) = (&self.lease, &self.reports);
        // After the task's change, which takes the job's lock first.
        let outcome = match &self.end {
            End::Succeeded {
                outputs,
                from_cache,
                shortfall,
            } => {
                lifecycle::succeed(
                    db,
                    lease,
                    reports,
                    outputs.clone(),
                    *from_cache,
                    shortfall.clone(),
                )
                .await?
            }
            End::Failed { failure, retry_at } => {
                lifecycle::fail(db, lease, reports, failure.clone(), *retry_at).await?
            }
            End::HandBack {
                run_after,
                with_usage,
            } => {
                let outcome = lifecycle::hand_back(db, lease, reports, *run_after).await?;
                if !with_usage {
                    return Ok(outcome);
                }
                outcome
            }
            End::Lost => Outcome::Lost,
        };
        usage::record(db, lease, &self.run, &self.usage).await?;
        Ok(outcome)
    }
}

type Request = (Arc<Settlement>, oneshot::Sender<Result<Outcome, DbErr>>);

/// Writes ends of attempts, batching those that arrive together. Runs until every handle is gone.
#[derive(Clone)]
pub(super) struct Recorder {
    tx: mpsc::Sender<Request>,
}

impl Recorder {
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(db, rx));
        Self { tx }
    }

    /// Writes one end, in a transaction it may share with other ends.
    pub async fn record(&self, settlement: Arc<Settlement>) -> Result<Outcome, DbErr> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((settlement, reply))
            .await
            .map_err(|_| DbErr::Custom("the attempt recorder has stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(DbErr::Custom("the attempt recorder has stopped".into())))
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Ends arriving within GATHER of the first share its transaction.
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(more)) => batch.push(more),
                _ => break,
            }
        }
        batch.sort_by(|a, b| a.0.lease.job.id.cmp(&b.0.lease.job.id));
        if batch.len() == 1 {
            for (settlement, reply) in batch.drain(..) {
                let _ = reply.send(alone(&db, &settlement).await);
            }
            continue;
        }
        match together(&db, &batch).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, ends = batch.len(), "writing ends of attempts together failed; writing each alone");
                for (settlement, reply) in batch.drain(..) {
                    let _ = reply.send(alone(&db, &settlement).await);
                }
            }
        }
    }
}

async fn together(db: &DatabaseConnection, batch: &[Request]) -> Result<Vec<Outcome>, DbErr> {
    let txn = db.begin().await?;
    // Every job of the batch is locked first, in id order, so the refunds' account locks that some
    // ends take come after all of them, as in any other transaction that locks a job.
    let mut job_ids: Vec<String> = batch.iter().map(|(s, _)| s.lease.job.id.clone()).collect();
    job_ids.dedup();
    crate::db::jobs::lock_all(&txn, &job_ids).await?;
    let mut outcomes = vec![Outcome::Lost; batch.len()];
    // Plain successes, the common end, are written together in a few statements (PostgreSQL);
    // every other end is its own change.
    let bulk = txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let mut plain = Vec::new();
    for (i, (settlement, _)) in batch.iter().enumerate() {
        match settlement.plain_success() {
            Some(success) if bulk => plain.push((i, success)),
            _ => outcomes[i] = settlement.apply(&txn).await?,
        }
    }
    if !plain.is_empty() {
        let (at, ends): (Vec<usize>, Vec<_>) = plain.into_iter().unzip();
        for (i, outcome) in at
            .into_iter()
            .zip(lifecycle::succeed_all(&txn, &ends).await?)
        {
            let settlement = &batch[i].0;
            usage::record(&txn, &settlement.lease, &settlement.run, &settlement.usage).await?;
            outcomes[i] = outcome;
        }
    }
    txn.commit().await?;
    Ok(outcomes)
}

async fn alone(db: &DatabaseConnection, settlement: &Settlement) -> Result<Outcome, DbErr> {
    let txn = db.begin().await?;
    let outcome = settlement.apply(&txn).await?;
    txn.commit().await?;
    Ok(outcome)
}
