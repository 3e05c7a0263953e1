//! The end of an attempt: success (alone, or many plain successes together), failure or retry, and
//! the hand-back of a task to the queue.

use std::collections::BTreeMap;

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use super::{end_in, orchestrator_line, record_with_end, task_event, Reported};
use crate::db::entities::job;
use crate::db::tasks::{self, Failed, Lease, Outcome};
use crate::db::{accounts, events, jobs};
use crate::domain::{now_ms, TaskState};

/// Units of a succeeded task that failed (pose set shots, images), with what to refund for them.
#[derive(Clone, Debug)]
pub struct Shortfall {
    pub failed_units: u32,
    pub failure: pb::Failure,
    pub refund: i64,
}

/// Ends the attempt with success: outputs recorded once, cache hits and failed units refunded.
pub async fn succeed<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &Reported,
    outputs: Vec<pb::Output>,
    from_cache: bool,
    shortfall: Option<Shortfall>,
) -> Result<Outcome, DbErr> {
    let (columns, mut events) = reported.clone().take(lease);
    let failure = shortfall.as_ref().map(|s| &s.failure);
    let Some(job) =
        tasks::end_succeeded(db, lease, &columns, &outputs, from_cache, failure).await?
    else {
        return Ok(Outcome::Lost);
    };
    crate::db::retention::record_refs(db, &job.id, &job.tenant_id, &outputs).await?;
    // A studio job's task: its first output becomes its pair's result in this same transaction.
    crate::db::studio::task_succeeded(
        db,
        &job.id,
        job.kind,
        &lease.task.id,
        outputs.first().map(|o| o.key.as_str()),
    )
    .await?;
    events.extend(success_events(
        lease,
        &outputs,
        from_cache,
        shortfall.as_ref(),
    ));
    if from_cache {
        accounts::refund_task(db, &job, &lease.task.id, "served from cache").await?;
    } else if let Some(s) = &shortfall {
        let reason = format!("{} units failed", s.failed_units);
        accounts::refund_units(db, &job, &lease.task.id, s.refund, &reason).await?;
    }
    events.push(task_event(
        &lease.task.id,
        TaskState::Succeeded,
        lease.attempt,
        shortfall.map(|s| s.failure),
        None,
    ));
    record_with_end(db, &job, events).await?;
    Ok(Outcome::Applied)
}

/// The events of a success before the task's own: its outputs, then the orchestrator's line.
fn success_events(
    lease: &Lease,
    outputs: &[pb::Output],
    from_cache: bool,
    shortfall: Option<&Shortfall>,
) -> Vec<pb::job_event::Event> {
    let mut events: Vec<pb::job_event::Event> = outputs
        .iter()
        .map(|output| {
            pb::job_event::Event::Output(pb::OutputReady {
                task_id: lease.task.id.clone(),
                output: Some(output.clone()),
            })
        })
        .collect();
    let mut line = format!(
        "attempt {} succeeded with {} outputs",
        lease.attempt,
        outputs.len()
    );
    if from_cache {
        line.push_str(", served from the cache and refunded");
    }
    if let Some(s) = shortfall {
        line.push_str(&format!(
            "; {} units failed and were refunded ({})",
            s.failed_units, s.failure.message
        ));
    }
    events.push(orchestrator_line(lease, "info", line));
    events
}

/// One attempt of [`succeed_all`]: it succeeded with its outputs, none from the cache and no unit
/// failed, so nothing is refunded.
pub struct PlainSuccess<'a> {
    pub lease: &'a Lease,
    pub reported: &'a Reported,
    pub outputs: &'a [pb::Output],
}

/// Ends several attempts with success at once (PostgreSQL), the jobs already locked by the caller:
/// one guarded statement for the tasks ([`tasks::end_succeeded_all`]), one read of their jobs' task
/// states, and one statement for every job's event row and (when its last task ended) its end. Each
/// attempt is still guarded by its lease: one no longer ours is `Lost` and writes nothing. Not for
/// jobs that may be studio jobs ([`crate::db::studio::may_be_studio`]), whose success also writes
/// their pair ([`succeed`] does).
pub async fn succeed_all<C: ConnectionTrait>(
    db: &C,
    ends: &[PlainSuccess<'_>],
) -> Result<Vec<Outcome>, DbErr> {
    let mut sources = Vec::with_capacity(ends.len());
    let mut reports = Vec::with_capacity(ends.len());
    for end in ends {
        let mut reported = end.reported.clone();
        // The success sets the stage and percent itself; of the reported columns only the source
        // is written.
        sources.push(reported.take_source());
        reports.push(reported.take(end.lease).1);
    }
    let rows: Vec<tasks::PlainSuccess<'_>> = ends
        .iter()
        .zip(&sources)
        .map(|(end, source)| tasks::PlainSuccess {
            lease: end.lease,
            source: source.as_ref(),
            outputs: end.outputs,
        })
        .collect();
    let applied = tasks::end_succeeded_all(db, &rows).await?;
    // Each job's events, in the order of its ends, then its end once every task is terminal.
    let mut by_job: BTreeMap<&str, (&job::Model, Vec<pb::job_event::Event>)> = BTreeMap::new();
    for (end, events) in ends.iter().zip(reports) {
        if !applied.contains(&end.lease.task.id) {
            continue;
        }
        let lease = end.lease;
        crate::db::retention::record_refs(db, &lease.job.id, &lease.job.tenant_id, end.outputs)
            .await?;
        let entry = by_job
            .entry(lease.job.id.as_str())
            .or_insert_with(|| (&lease.job, Vec::new()));
        entry.1.extend(events);
        entry
            .1
            .extend(success_events(lease, end.outputs, false, None));
        entry.1.push(task_event(
            &lease.task.id,
            TaskState::Succeeded,
            lease.attempt,
            None,
            None,
        ));
    }
    let job_ids: Vec<String> = by_job.keys().map(|id| id.to_string()).collect();
    let ended = jobs::final_states(db, &job_ids).await?;
    let changes = by_job
        .into_values()
        .map(|(job, mut events)| {
            let update = end_in(ended.get(&job.id).copied(), &mut events);
            events::JobChange {
                job,
                events,
                update,
            }
        })
        .collect();
    events::record_many(db, changes).await?;
    Ok(ends
        .iter()
        .map(|end| {
            if applied.contains(&end.lease.task.id) {
                Outcome::Applied
            } else {
                Outcome::Lost
            }
        })
        .collect())
}

/// Ends the attempt with a failure: RETRY_WAIT until `retry_at` when given, else FAILED and refunded.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &Reported,
    failure: pb::Failure,
    retry_at: Option<i64>,
) -> Result<Outcome, DbErr> {
    let (columns, mut events) = reported.clone().take(lease);
    let failed = retry_at.map_or(Failed::Finally, Failed::RetryAt);
    let Some(job) = tasks::end_failed(db, lease, &columns, &failure, failed).await? else {
        return Ok(Outcome::Lost);
    };
    let (state, level, next) = match retry_at {
        Some(at) => (
            TaskState::RetryWait,
            "warn",
            format!(
                "retrying in {:.1} s",
                (at - now_ms()).max(0) as f64 / 1000.0
            ),
        ),
        None => (TaskState::Failed, "error", "not retried".to_string()),
    };
    events.push(orchestrator_line(
        lease,
        level,
        format!(
            "attempt {} failed with {} {}: {}; {next}",
            lease.attempt, failure.code, failure.reason, failure.message
        ),
    ));
    events.push(task_event(
        &lease.task.id,
        state,
        lease.attempt,
        Some(failure),
        retry_at,
    ));
    if retry_at.is_none() {
        accounts::refund_task(db, &job, &lease.task.id, "task failed").await?;
        record_with_end(db, &job, events).await?;
    } else {
        events::record(db, &job, events, events::JobUpdate::default()).await?;
    }
    Ok(Outcome::Applied)
}

/// Hands the task back to the queue without spending the attempt (the processor was at capacity).
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &Reported,
    run_after: i64,
) -> Result<Outcome, DbErr> {
    let (columns, mut events) = reported.clone().take(lease);
    let Some(job) = tasks::end_handed_back(db, lease, &columns, run_after).await? else {
        return Ok(Outcome::Lost);
    };
    events.push(task_event(
        &lease.task.id,
        TaskState::Queued,
        lease.attempt - 1,
        None,
        None,
    ));
    events::record(db, &job, events, events::JobUpdate::default()).await?;
    Ok(Outcome::Applied)
}
