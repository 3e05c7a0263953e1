//! Task state changes. Every change of a running task is guarded by its lease owner and attempt, so a
//! replica that lost its lease (or a cancelled task) can never overwrite what happened since.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::{job, task};
use super::{accounts, events, jobs, statement};
use crate::domain::{now_ms, TaskState};

/// A task attempt this replica holds the lease of.
#[derive(Clone, Debug)]
pub struct Lease {
    pub task: task::Model,
    pub job: job::Model,
    pub owner: String,
    pub attempt: i32,
}

/// What became of a guarded change.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// The task is no longer this attempt's (cancelled, timed out or taken over): stop working on it.
    Lost,
}

fn task_event(
    task_id: &str,
    state: TaskState,
    attempts: i32,
    failure: Option<pb::Failure>,
    retry_at: Option<i64>,
) -> pb::job_event::Event {
    pb::job_event::Event::TaskState(pb::TaskStateChanged {
        task_id: task_id.to_string(),
        state: state.to_proto() as i32,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        failure,
        retry_at: retry_at.map(crate::domain::timestamp),
    })
}

/// Claims up to `limit` runnable tasks for `owner`: each becomes RUNNING with a lease, its attempt
/// counted. On PostgreSQL candidates are picked `FOR UPDATE SKIP LOCKED`, so replicas never claim the
/// same task and never wait on each other; a task whose job row is busy is left for the next round
/// rather than waited for, which keeps the lock order (job, then task) of every other change.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Lease>, DbErr> {
    let backend = db.get_database_backend();
    let now = now_ms();
    let skip_locked = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let rows = db
        .query_all(statement(
            backend,
            &format!(
                "SELECT id, job_id FROM tasks WHERE state IN ('queued', 'retry_wait') AND run_after <= ? \
                 ORDER BY run_after, created_at, idx LIMIT ?{skip_locked}"
            ),
            vec![now.into(), i64::try_from(limit).unwrap_or(1).into()],
        ))
        .await?;
    let mut leases = Vec::new();
    for row in rows {
        let task_id: String = row.try_get_by_index(0)?;
        let job_id: String = row.try_get_by_index(1)?;
        let job = if backend == DatabaseBackend::Postgres {
            let locked = db
                .query_one(statement(
                    backend,
                    "SELECT id FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED",
                    vec![job_id.clone().into()],
                ))
                .await?;
            if locked.is_none() {
                continue;
            }
            job::Entity::find_by_id(job_id).one(db).await?
        } else {
            job::Entity::find_by_id(job_id).one(db).await?
        };
        let Some(job) = job else { continue };
        let updated = db
            .execute(statement(
                backend,
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, \
                 started_at = COALESCE(started_at, ?), stage = '', percent = 0 \
                 WHERE id = ? AND state IN ('queued', 'retry_wait')",
                vec![owner.into(), (now + lease_ms).into(), now.into(), task_id.clone().into()],
            ))
            .await?;
        if updated.rows_affected() == 0 {
            continue;
        }
        let Some(task) = task::Entity::find_by_id(task_id).one(db).await? else {
            continue;
        };
        jobs::mark_running(db, &job).await?;
        events::append(
            db,
            &job,
            task_event(&task.id, TaskState::Running, task.attempts, None, None),
        )
        .await?;
        let attempt = task.attempts;
        leases.push(Lease {
            task,
            job,
            owner: owner.to_string(),
            attempt,
        });
    }
    Ok(leases)
}

/// The lease owner of a task a worker outside Atelier took (JobService.ReportTask). No replica has
/// that name, so no processor is dispatched to the task and no replica renews its lease: the lease
/// runs to the attempt's deadline, and the sweeper times the task out (1007, refunded) when the
/// worker has not reported its end by then.
pub const EXTERNAL_OWNER: &str = "external";

/// Whether the task is running under the claim of a worker outside Atelier.
pub fn is_external(task: &task::Model) -> bool {
    task.state == TaskState::Running && task.lease_owner.as_deref() == Some(EXTERNAL_OWNER)
}

/// The lease of a task an outside worker holds, for the guarded changes that end it.
pub fn external_lease(task: task::Model, job: job::Model) -> Lease {
    let attempt = task.attempts;
    Lease {
        task,
        job,
        owner: EXTERNAL_OWNER.to_string(),
        attempt,
    }
}

/// A worker outside Atelier takes a waiting (queued or retry-wait) task: it becomes RUNNING under
/// [`EXTERNAL_OWNER`] with its attempt counted, its lease ending at the attempt's deadline. `None`
/// when the task is no longer waiting. The caller holds the job's lock.
pub async fn claim_external<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task_id: &str,
    deadline_ms: i64,
) -> Result<Option<Lease>, DbErr> {
    let now = now_ms();
    let updated = db
        .execute(statement(
            db.get_database_backend(),
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, \
             started_at = COALESCE(started_at, ?), stage = '', percent = 0 \
             WHERE id = ? AND state IN ('queued', 'retry_wait')",
            vec![
                EXTERNAL_OWNER.into(),
                (now + deadline_ms).into(),
                now.into(),
                task_id.into(),
            ],
        ))
        .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let Some(task) = task::Entity::find_by_id(task_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    jobs::mark_running(db, job).await?;
    events::append(
        db,
        job,
        task_event(&task.id, TaskState::Running, task.attempts, None, None),
    )
    .await?;
    let lease = external_lease(task, job.clone());
    let line = format!(
        "attempt {} taken by a worker outside Atelier; it has {:.0} s to report the result",
        lease.attempt,
        deadline_ms as f64 / 1000.0
    );
    note(db, &lease, "info", line).await?;
    Ok(Some(lease))
}

/// The guard every change of a running attempt carries.
const GUARD: &str = "id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?";

fn guard_values(lease: &Lease) -> [sea_orm::Value; 3] {
    [
        lease.task.id.clone().into(),
        lease.owner.clone().into(),
        lease.attempt.into(),
    ]
}

/// Extends the lease; `Lost` when the attempt is no longer this replica's.
pub async fn renew<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    lease_ms: i64,
) -> Result<Outcome, DbErr> {
    let mut values = vec![(now_ms() + lease_ms).into()];
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET lease_expires_at = ? WHERE {GUARD}"),
            values,
        ))
        .await?;
    Ok(if r.rows_affected() == 0 {
        Outcome::Lost
    } else {
        Outcome::Applied
    })
}

async fn guarded_update<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    set: &str,
    mut values: Vec<sea_orm::Value>,
) -> Result<Outcome, DbErr> {
    // Lock order: job first, like every other change of this job.
    jobs::lock(db, &lease.job.id).await?;
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET {set} WHERE {GUARD}"),
            values,
        ))
        .await?;
    Ok(if r.rows_affected() == 0 {
        Outcome::Lost
    } else {
        Outcome::Applied
    })
}

/// Records the source the processor read.
pub async fn source_fetched<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    info: pb::SourceInfo,
    processor_id: &str,
) -> Result<Outcome, DbErr> {
    let outcome = guarded_update(
        db,
        lease,
        "source_info = ?",
        vec![info.encode_to_vec().into()],
    )
    .await?;
    if outcome == Outcome::Applied {
        let line = format!(
            "attempt {} on processor {processor_id}: source {} {}x{}, {} bytes",
            lease.attempt,
            pb::ImageFormat::try_from(info.format)
                .map_or("unknown", |f| f.as_str_name())
                .trim_start_matches("IMAGE_FORMAT_")
                .to_ascii_lowercase(),
            info.width,
            info.height,
            info.bytes
        );
        let event = pb::job_event::Event::SourceFetched(pb::SourceFetchedEvent {
            task_id: lease.task.id.clone(),
            source: Some(info),
        });
        events::append(db, &lease.job, event).await?;
        note(db, lease, "info", line).await?;
    }
    Ok(outcome)
}

/// Appends an orchestrator log line about the attempt, in the caller's transaction.
async fn note<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    level: &str,
    message: String,
) -> Result<(), DbErr> {
    let line = pb::LogLine {
        task_id: lease.task.id.clone(),
        level: level.to_string(),
        message,
        origin: "orchestrator".to_string(),
    };
    events::append(db, &lease.job, pb::job_event::Event::Log(line)).await?;
    Ok(())
}

/// Records progress of the attempt.
pub async fn progress<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    stage: &str,
    percent: u32,
) -> Result<Outcome, DbErr> {
    let percent = percent.min(100);
    let outcome = guarded_update(
        db,
        lease,
        "stage = ?, percent = ?",
        vec![stage.into(), i32::try_from(percent).unwrap_or(100).into()],
    )
    .await?;
    if outcome == Outcome::Applied {
        let event = pb::job_event::Event::Progress(pb::TaskProgress {
            task_id: lease.task.id.clone(),
            stage: stage.to_string(),
            percent,
        });
        events::append(db, &lease.job, event).await?;
    }
    Ok(outcome)
}

/// Appends a log line of the attempt to the job's events.
pub async fn log<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    level: &str,
    message: &str,
    origin: &str,
) -> Result<(), DbErr> {
    jobs::lock(db, &lease.job.id).await?;
    let line = pb::LogLine {
        task_id: lease.task.id.clone(),
        level: level.to_string(),
        message: message.to_string(),
        origin: origin.to_string(),
    };
    events::append(db, &lease.job, pb::job_event::Event::Log(line)).await?;
    Ok(())
}

/// Ends the attempt successfully with its outputs, written once; refunds a task served from cache.
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
    outputs: Vec<pb::Output>,
    from_cache: bool,
    shortfall: Option<Shortfall>,
) -> Result<Outcome, DbErr> {
    let mut blob = Vec::new();
    for output in &outputs {
        output
            .encode_length_delimited(&mut blob)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    let now = now_ms();
    let outcome = guarded_update(
        db,
        lease,
        "state = 'succeeded', outputs = ?, from_cache = ?, stage = 'done', percent = 100, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL, failure_code = ?, failure_message = ?",
        vec![
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
    if outcome == Outcome::Lost {
        return Ok(outcome);
    }
    super::retention::record_refs(db, &lease.job.id, &lease.job.tenant_id, &outputs).await?;
    // A studio job's task: its first output becomes its pair's result in this same transaction.
    super::studio::task_succeeded(
        db,
        &lease.job.id,
        &lease.task.id,
        outputs.first().map(|o| o.key.as_str()),
    )
    .await?;
    let outputs_count = outputs.len();
    for output in outputs {
        events::append(
            db,
            &lease.job,
            pb::job_event::Event::Output(pb::OutputReady {
                task_id: lease.task.id.clone(),
                output: Some(output),
            }),
        )
        .await?;
    }
    let mut line = format!(
        "attempt {} succeeded with {} outputs",
        lease.attempt, outputs_count
    );
    if from_cache {
        line.push_str(", served from the cache and refunded");
    }
    if let Some(s) = &shortfall {
        line.push_str(&format!(
            "; {} units failed and were refunded ({})",
            s.failed_units, s.failure.message
        ));
    }
    note(db, lease, "info", line).await?;
    if from_cache {
        accounts::refund_task(db, &lease.job, &lease.task.id, "served from cache").await?;
    } else if let Some(s) = &shortfall {
        let reason = format!("{} units failed", s.failed_units);
        accounts::refund_units(db, &lease.job, &lease.task.id, s.refund, &reason).await?;
    }
    events::append(
        db,
        &lease.job,
        task_event(
            &lease.task.id,
            TaskState::Succeeded,
            lease.attempt,
            shortfall.map(|s| s.failure),
            None,
        ),
    )
    .await?;
    finish_job(db, &lease.job.id).await?;
    Ok(outcome)
}

/// Ends the attempt with a failure: RETRY_WAIT until `retry_at` when given, else FAILED and refunded.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    failure: pb::Failure,
    retry_at: Option<i64>,
) -> Result<Outcome, DbErr> {
    let code = i32::try_from(failure.code).unwrap_or_default();
    let outcome = match retry_at {
        Some(at) => {
            guarded_update(
                db,
                lease,
                "state = 'retry_wait', run_after = ?, failure_code = ?, failure_message = ?, lease_owner = NULL, lease_expires_at = NULL",
                vec![at.into(), code.into(), failure.message.clone().into()],
            )
            .await?
        }
        None => {
            guarded_update(
                db,
                lease,
                "state = 'failed', failure_code = ?, failure_message = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL",
                vec![code.into(), failure.message.clone().into(), now_ms().into()],
            )
            .await?
        }
    };
    if outcome == Outcome::Lost {
        return Ok(outcome);
    }
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
    note(
        db,
        lease,
        if retry_at.is_some() { "warn" } else { "error" },
        format!(
            "attempt {} failed with {} {}: {}; {next}",
            lease.attempt, failure.code, failure.reason, failure.message
        ),
    )
    .await?;
    events::append(
        db,
        &lease.job,
        task_event(
            &lease.task.id,
            state,
            lease.attempt,
            Some(failure),
            retry_at,
        ),
    )
    .await?;
    if retry_at.is_none() {
        accounts::refund_task(db, &lease.job, &lease.task.id, "task failed").await?;
        finish_job(db, &lease.job.id).await?;
    }
    Ok(outcome)
}

/// Hands the task back to the queue without spending the attempt (the processor was at capacity).
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    run_after: i64,
) -> Result<Outcome, DbErr> {
    let outcome = guarded_update(
        db,
        lease,
        "state = 'queued', attempts = attempts - 1, run_after = ?, lease_owner = NULL, lease_expires_at = NULL",
        vec![run_after.into()],
    )
    .await?;
    if outcome == Outcome::Applied {
        events::append(
            db,
            &lease.job,
            task_event(
                &lease.task.id,
                TaskState::Queued,
                lease.attempt - 1,
                None,
                None,
            ),
        )
        .await?;
    }
    Ok(outcome)
}

async fn finish_job<C: ConnectionTrait>(db: &C, job_id: &str) -> Result<(), DbErr> {
    // Re-read under the lock: other tasks may have changed the job since the lease was taken.
    if let Some(job) = job::Entity::find_by_id(job_id.to_string()).one(db).await? {
        jobs::finish_if_done(db, &job).await?;
    }
    Ok(())
}

/// Running tasks whose lease has expired (their orchestrator or processor died).
pub async fn expired<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::State.eq(TaskState::Running))
        .filter(task::Column::LeaseExpiresAt.lt(now_ms()))
        .order_by_asc(task::Column::LeaseExpiresAt)
        .limit(limit)
        .all(db)
        .await
}

/// Queued tasks created before `cutoff`, never started.
pub async fn stale_queued<C: ConnectionTrait>(
    db: &C,
    cutoff: i64,
    limit: u64,
) -> Result<Vec<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::State.eq(TaskState::Queued))
        .filter(task::Column::CreatedAt.lt(cutoff))
        .limit(limit)
        .all(db)
        .await
}

/// Takes over an expired lease: the task goes back to the queue, or fails once its attempts are spent.
pub async fn recover<C: ConnectionTrait>(
    db: &C,
    task: &task::Model,
    max_attempts: i32,
) -> Result<bool, DbErr> {
    let Some(job) = jobs::lock(db, &task.job_id).await? else {
        return Ok(false);
    };
    let backend = db.get_database_backend();
    let exhausted = task.attempts >= max_attempts;
    let (set, mut values): (&str, Vec<sea_orm::Value>) = if exhausted {
        (
            "state = ?, failure_code = ?, failure_message = 'the task lost its processor or orchestrator too many times', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL",
            vec![
                TaskState::Failed.into(),
                code_number(atelier_codes::ErrorCode::Unavailable).into(),
                now_ms().into(),
            ],
        )
    } else {
        (
            "state = ?, run_after = ?, lease_owner = NULL, lease_expires_at = NULL",
            vec![TaskState::Queued.into(), now_ms().into()],
        )
    };
    values.extend([
        task.id.clone().into(),
        TaskState::Running.into(),
        task.attempts.into(),
        now_ms().into(),
    ]);
    let r = db
        .execute(statement(
            backend,
            &format!("UPDATE tasks SET {set} WHERE id = ? AND state = ? AND attempts = ? AND lease_expires_at < ?"),
            values,
        ))
        .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    if exhausted {
        let failure = failure(
            atelier_codes::ErrorCode::Unavailable,
            "the task lost its processor or orchestrator too many times",
        );
        events::append(
            db,
            &job,
            task_event(
                &task.id,
                TaskState::Failed,
                task.attempts,
                Some(failure),
                None,
            ),
        )
        .await?;
        accounts::refund_task(db, &job, &task.id, "task failed").await?;
        jobs::finish_if_done(db, &job).await?;
    } else {
        events::append(
            db,
            &job,
            task_event(&task.id, TaskState::Queued, task.attempts, None, None),
        )
        .await?;
    }
    Ok(true)
}

/// Unfinished tasks of jobs whose client deadline has passed.
pub async fn past_deadline<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<task::Model>, DbErr> {
    let rows = db
        .query_all(statement(
            db.get_database_backend(),
            "SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.deadline_at IS NOT NULL AND j.deadline_at < ? \
             AND t.state IN ('queued', 'running', 'retry_wait') LIMIT ?",
            vec![now_ms().into(), i64::try_from(limit).unwrap_or(100).into()],
        ))
        .await?;
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get_by_index::<String>(0).ok())
        .collect();
    task::Entity::find()
        .filter(task::Column::Id.is_in(ids))
        .all(db)
        .await
}

/// Fails an unfinished task that ran out of time (1007: queue timeout or the job's deadline) and
/// refunds it. A running attempt loses its lease, and its replica is told to stop it.
pub async fn time_out<C: ConnectionTrait>(
    db: &C,
    task: &task::Model,
    message: &str,
) -> Result<bool, DbErr> {
    let Some(job) = jobs::lock(db, &task.job_id).await? else {
        return Ok(false);
    };
    let r = db
        .execute(statement(
            db.get_database_backend(),
            "UPDATE tasks SET state = ?, failure_code = ?, failure_message = ?, finished_at = ?, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ? AND state IN (?, ?, ?)",
            vec![
                TaskState::Failed.into(),
                code_number(atelier_codes::ErrorCode::TimedOut).into(),
                message.into(),
                now_ms().into(),
                task.id.clone().into(),
                TaskState::Queued.into(),
                TaskState::Running.into(),
                TaskState::RetryWait.into(),
            ],
        ))
        .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    let failure = failure(atelier_codes::ErrorCode::TimedOut, message);
    let event = task_event(
        &task.id,
        TaskState::Failed,
        task.attempts,
        Some(failure),
        None,
    );
    events::append(db, &job, event).await?;
    accounts::refund_task(db, &job, &task.id, "task timed out").await?;
    if task.state == TaskState::Running {
        events::announce_cancel(db, std::slice::from_ref(&task.id)).await?;
    }
    jobs::finish_if_done(db, &job).await?;
    Ok(true)
}

/// A stored failure in the shape of the wire.
/// A code's number as the `failure_code` column holds it.
fn code_number(code: atelier_codes::ErrorCode) -> i32 {
    i32::try_from(code.number()).unwrap_or_default()
}

pub fn failure(code: atelier_codes::ErrorCode, message: &str) -> pb::Failure {
    pb::Failure {
        code: code.number(),
        reason: code.reason().to_string(),
        message: message.to_string(),
    }
}
