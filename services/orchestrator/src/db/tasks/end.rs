//! The end of an attempt: success (alone, or many plain successes together), failure or retry, and
//! the hand-back of a task to the queue.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{ConnectionTrait, DbErr};

use super::reports::with_columns;
use super::{guarded_update, orchestrator_line, task_event, Lease, Outcome, Reported};
use crate::db::entities::job;
use crate::db::{accounts, events, jobs, statement};
use crate::domain::{now_ms, TaskState};

/// Units of a succeeded task that failed (pose set shots, images), with what to refund for them.
#[derive(Clone, Debug)]
pub struct Shortfall {
    pub failed_units: u32,
    pub failure: pb::Failure,
    pub refund: i64,
}

/// The end of an attempt as one change: the task's row (with what was reported and not yet written),
/// then the job's events, and its end when this was its last task, in one job-row write and one
/// event row.
async fn end_attempt<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &Reported,
    set: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Option<(job::Model, Vec<pb::job_event::Event>)>, DbErr> {
    let mut reported = reported.clone();
    let (columns, events) = reported.take(lease);
    let (set, values) = with_columns(set, values, columns);
    Ok(guarded_update(db, lease, &set, values)
        .await?
        .map(|job| (job, events)))
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
    let blob = encode_outputs(&outputs)?;
    let now = now_ms();
    let ended = end_attempt(
        db,
        lease,
        reported,
        "state = ?, outputs = ?, from_cache = ?, stage = 'done', percent = 100, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL, failure_code = ?, failure_message = ?",
        vec![
            TaskState::Succeeded.into(),
            blob.into(),
            from_cache.into(),
            now.into(),
            shortfall
                .as_ref()
                .map(|s| i32::try_from(s.failure.code).unwrap_or_default())
                .into(),
            shortfall.as_ref().map(|s| s.failure.message.clone()).into(),
        ],
    )
    .await?;
    let Some((job, mut events)) = ended else {
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

/// A task's outputs as stored (see [`crate::db::stored_outputs`]).
fn encode_outputs(outputs: &[pb::Output]) -> Result<Vec<u8>, DbErr> {
    let mut blob = Vec::new();
    for output in outputs {
        output
            .encode_length_delimited(&mut blob)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(blob)
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
/// one guarded `UPDATE … FROM (VALUES …)` for the tasks, one read of their jobs' task states, and
/// one statement for every job's event row and (when its last task ended) its end. Each attempt is
/// still guarded by its lease: one no longer ours is `Lost` and writes nothing. Not for jobs that
/// may be studio jobs ([`crate::db::studio::may_be_studio`]), whose success also writes their pair
/// ([`succeed`] does).
pub async fn succeed_all<C: ConnectionTrait>(
    db: &C,
    ends: &[PlainSuccess<'_>],
) -> Result<Vec<Outcome>, DbErr> {
    use std::collections::{BTreeMap, HashSet};
    let backend = db.get_database_backend();
    let now = now_ms();
    let mut reports = Vec::with_capacity(ends.len());
    let mut rows = Vec::with_capacity(ends.len());
    let mut values: Vec<sea_orm::Value> = vec![TaskState::Succeeded.into(), now.into()];
    for end in ends {
        let mut reported = end.reported.clone();
        // The success sets the stage and percent itself; of the reported columns only the source
        // is written.
        let source = reported.take_source();
        let (_, events) = reported.take(end.lease);
        let blob = encode_outputs(end.outputs)?;
        rows.push("(?::text, ?::text, ?::integer, ?::bytea, ?::bytea)");
        values.extend([
            end.lease.task.id.clone().into(),
            end.lease.owner.clone().into(),
            end.lease.attempt.into(),
            blob.into(),
            source.into(),
        ]);
        reports.push(events);
    }
    values.push(TaskState::Running.into());
    let sql = format!(
        "UPDATE tasks SET state = ?, outputs = v.outputs, from_cache = FALSE, stage = 'done', \
         percent = 100, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL, \
         failure_code = NULL, failure_message = NULL, \
         source_info = COALESCE(v.source_info, tasks.source_info) \
         FROM (VALUES {}) v (id, owner, attempts, outputs, source_info) \
         WHERE tasks.id = v.id AND tasks.state = ? AND tasks.lease_owner = v.owner \
         AND tasks.attempts = v.attempts RETURNING tasks.id",
        rows.join(", ")
    );
    let applied: HashSet<String> = db
        .query_all(statement(backend, &sql, values))
        .await?
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?;
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
            let mut update = events::JobUpdate::default();
            if let Some(state) = ended.get(&job.id) {
                events.push(jobs::state_event(*state));
                update = jobs::ending(*state);
            }
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

/// Records `events` of the job, with its end when all its tasks are terminal now: one job-row write,
/// one event row.
async fn record_with_end<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    mut events: Vec<pb::job_event::Event>,
) -> Result<(), DbErr> {
    let mut update = events::JobUpdate::default();
    if let Some(state) = jobs::final_state(db, job).await? {
        events.push(jobs::state_event(state));
        update = jobs::ending(state);
    }
    events::record(db, job, events, update).await?;
    Ok(())
}

/// Ends the attempt with a failure: RETRY_WAIT until `retry_at` when given, else FAILED and refunded.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &Reported,
    failure: pb::Failure,
    retry_at: Option<i64>,
) -> Result<Outcome, DbErr> {
    let code = i32::try_from(failure.code).unwrap_or_default();
    let ended = match retry_at {
        Some(at) => {
            end_attempt(
                db,
                lease,
                reported,
                "state = ?, run_after = ?, failure_code = ?, failure_message = ?, lease_owner = NULL, lease_expires_at = NULL",
                vec![TaskState::RetryWait.into(), at.into(), code.into(), failure.message.clone().into()],
            )
            .await?
        }
        None => {
            end_attempt(
                db,
                lease,
                reported,
                "state = ?, failure_code = ?, failure_message = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL",
                vec![TaskState::Failed.into(), code.into(), failure.message.clone().into(), now_ms().into()],
            )
            .await?
        }
    };
    let Some((job, mut events)) = ended else {
        return Ok(Outcome::Lost);
    };
    let state = if retry_at.is_some() {
        TaskState::RetryWait
    } else {
        TaskState::Failed
    };
    let next = match retry_at {
        Some(at) => format!(
            "retrying in {:.1} s",
            (at - now_ms()).max(0) as f64 / 1000.0
        ),
        None => "not retried".to_string(),
    };
    events.push(orchestrator_line(
        lease,
        if retry_at.is_some() { "warn" } else { "error" },
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
    let ended = end_attempt(
        db,
        lease,
        reported,
        "state = ?, attempts = attempts - 1, run_after = ?, lease_owner = NULL, lease_expires_at = NULL",
        vec![TaskState::Queued.into(), run_after.into()],
    )
    .await?;
    let Some((job, mut events)) = ended else {
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
