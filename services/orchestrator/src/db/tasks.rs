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
use crate::domain::{now_ms, JobState, TaskState};

/// A task attempt this replica holds the lease of.
#[derive(Clone, Debug)]
pub struct Lease {
    pub task: task::Model,
    pub job: job::Model,
    pub owner: String,
    pub attempt: i32,
}

/// What became of a guarded change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Claims up to `limit` runnable tasks for `owner` in one statement: each becomes RUNNING with a lease,
/// its attempt counted. On PostgreSQL the candidates and their jobs are locked `FOR UPDATE SKIP
/// LOCKED`, so replicas never claim the same task and never wait on each other; a task whose job row
/// is busy is left for the next round rather than waited for, which keeps the lock order (job, then
/// task) of every other change. Each job then records its tasks' start (and its own) as one event row
/// in the same write that moves it to RUNNING.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Lease>, DbErr> {
    let backend = db.get_database_backend();
    let now = now_ms();
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE OF t, j SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "WITH picked AS (SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id \
         WHERE t.state IN (?, ?) AND t.run_after <= ? ORDER BY t.run_after, t.created_at, t.idx LIMIT ?{lock}) \
         UPDATE tasks SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, \
         started_at = COALESCE(started_at, ?), stage = '', percent = 0 \
         WHERE id IN (SELECT id FROM picked) RETURNING *"
    );
    let mut claimed = task::Entity::find()
        .from_raw_sql(statement(
            backend,
            &sql,
            vec![
                TaskState::Queued.into(),
                TaskState::RetryWait.into(),
                now.into(),
                i64::try_from(limit).unwrap_or(1).into(),
                TaskState::Running.into(),
                owner.into(),
                (now + lease_ms).into(),
                now.into(),
            ],
        ))
        .all(db)
        .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    claimed.sort_by(|a, b| {
        (a.run_after, a.created_at, a.idx).cmp(&(b.run_after, b.created_at, b.idx))
    });
    let mut job_ids: Vec<String> = claimed.iter().map(|t| t.job_id.clone()).collect();
    job_ids.sort();
    job_ids.dedup();
    let mut jobs = job::Entity::find()
        .filter(job::Column::Id.is_in(job_ids))
        .all(db)
        .await?;
    // Every job's start is one event row, all written in one statement.
    let changes = jobs
        .iter()
        .map(|job| {
            let mut events = Vec::new();
            let mut update = events::JobUpdate::default();
            if job.state == JobState::Queued {
                events.push(jobs::state_event(JobState::Running));
                update.state = Some(JobState::Running);
            }
            events.extend(
                claimed
                    .iter()
                    .filter(|t| t.job_id == job.id)
                    .map(|t| task_event(&t.id, TaskState::Running, t.attempts, None, None)),
            );
            events::JobChange {
                job,
                events,
                update,
            }
        })
        .collect();
    let sequences = events::record_many(db, changes).await?;
    for (job, sequence) in jobs.iter_mut().zip(sequences) {
        if job.state == JobState::Queued {
            job.state = JobState::Running;
        }
        job.last_sequence = sequence;
    }
    Ok(claimed
        .into_iter()
        .filter_map(|task| {
            let job = jobs.iter().find(|j| j.id == task.job_id)?.clone();
            let attempt = task.attempts;
            Some(Lease {
                task,
                job,
                owner: owner.to_string(),
                attempt,
            })
        })
        .collect())
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
            "UPDATE tasks SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, \
             started_at = COALESCE(started_at, ?), stage = '', percent = 0 \
             WHERE id = ? AND state IN (?, ?)",
            vec![
                TaskState::Running.into(),
                EXTERNAL_OWNER.into(),
                (now + deadline_ms).into(),
                now.into(),
                task_id.into(),
                TaskState::Queued.into(),
                TaskState::RetryWait.into(),
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
    let lease = external_lease(task, job.clone());
    let line = format!(
        "attempt {} taken by a worker outside Atelier; it has {:.0} s to report the result",
        lease.attempt,
        deadline_ms as f64 / 1000.0
    );
    let mut events = Vec::with_capacity(3);
    let mut update = events::JobUpdate::default();
    if job.state == JobState::Queued {
        events.push(jobs::state_event(JobState::Running));
        update.state = Some(JobState::Running);
    }
    events.push(task_event(
        &lease.task.id,
        TaskState::Running,
        lease.attempt,
        None,
        None,
    ));
    events.push(orchestrator_line(&lease, "info", line));
    events::record(db, job, events, update).await?;
    Ok(Some(lease))
}

/// The guard every change of a running attempt carries.
const GUARD: &str = "id = ? AND state = ? AND lease_owner = ? AND attempts = ?";

fn guard_values(lease: &Lease) -> [sea_orm::Value; 4] {
    [
        lease.task.id.clone().into(),
        TaskState::Running.into(),
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

/// The task's guarded change, after the job's lock; returns the locked job as it is now, or `None`
/// when the attempt is no longer this lease's.
async fn guarded_update<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    set: &str,
    mut values: Vec<sea_orm::Value>,
) -> Result<Option<job::Model>, DbErr> {
    // Lock order: job first, like every other change of this job.
    let Some(job) = jobs::lock(db, &lease.job.id).await? else {
        return Ok(None);
    };
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET {set} WHERE {GUARD}"),
            values,
        ))
        .await?;
    Ok((r.rows_affected() > 0).then_some(job))
}

/// Most events an attempt keeps in memory between two writes; past it, log lines are counted and one
/// line says how many were dropped.
const MAX_REPORTED: usize = 500;

/// What a running attempt reported that is not written yet: the processor's source, log lines and
/// the orchestrator's own notes, in order, and its latest progress. It is written with the attempt's
/// next change (its end, usually) or by [`flush`] while the attempt runs long, so a short attempt
/// costs no write for its reports. Of the progress only the latest is stored, as the task's stage
/// and percent and one event: at most once a second while the attempt runs, and with its end.
#[derive(Clone, Debug, Default)]
pub struct Reported {
    events: Vec<pb::job_event::Event>,
    source: Option<pb::SourceInfo>,
    progress: Option<(String, u32)>,
    dropped: u64,
}

impl Reported {
    /// The source the processor read, with the orchestrator's line about it.
    pub fn source_fetched(&mut self, lease: &Lease, info: pb::SourceInfo, processor_id: &str) {
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
        self.push(pb::job_event::Event::SourceFetched(
            pb::SourceFetchedEvent {
                task_id: lease.task.id.clone(),
                source: Some(info.clone()),
            },
        ));
        self.push(orchestrator_line(lease, "info", line));
        self.source = Some(info);
    }

    /// The latest progress of the attempt.
    pub fn progress(&mut self, stage: &str, percent: u32) {
        self.progress = Some((stage.to_string(), percent.min(100)));
    }

    /// A log line of the attempt.
    pub fn log(&mut self, lease: &Lease, level: &str, message: &str, origin: &str) {
        self.push(pb::job_event::Event::Log(pb::LogLine {
            task_id: lease.task.id.clone(),
            level: level.to_string(),
            message: message.to_string(),
            origin: origin.to_string(),
        }));
    }

    /// Whether anything waits to be written.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.source.is_none() && self.progress.is_none()
    }

    fn push(&mut self, event: pb::job_event::Event) {
        if self.events.len() < MAX_REPORTED {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// The task columns and events to write, leaving nothing pending.
    fn take(
        &mut self,
        lease: &Lease,
    ) -> (
        Vec<(&'static str, sea_orm::Value)>,
        Vec<pb::job_event::Event>,
    ) {
        let mut columns: Vec<(&'static str, sea_orm::Value)> = Vec::new();
        if let Some(info) = self.source.take() {
            columns.push(("source_info", info.encode_to_vec().into()));
        }
        let mut events = std::mem::take(&mut self.events);
        if let Some((stage, percent)) = self.progress.take() {
            // The latest progress is stored too, once, so a replay shows how far the attempt got.
            events.push(pb::job_event::Event::Progress(pb::TaskProgress {
                task_id: lease.task.id.clone(),
                stage: stage.clone(),
                percent,
            }));
            columns.push(("stage", stage.into()));
            columns.push(("percent", i32::try_from(percent).unwrap_or(100).into()));
        }
        if self.dropped > 0 {
            let line = format!(
                "{} reports of the attempt were not kept (more than {MAX_REPORTED} between two writes)",
                self.dropped
            );
            events.push(orchestrator_line(lease, "warn", line));
            self.dropped = 0;
        }
        (columns, events)
    }
}

/// `column = ?, …` of `columns`, after `set` (which wins where both name a column), and their values
/// after `values`.
fn with_columns(
    set: &str,
    mut values: Vec<sea_orm::Value>,
    columns: Vec<(&'static str, sea_orm::Value)>,
) -> (String, Vec<sea_orm::Value>) {
    let named: Vec<&str> = set
        .split(',')
        .filter_map(|part| part.split('=').next())
        .map(str::trim)
        .collect();
    let mut parts: Vec<String> = if set.is_empty() {
        Vec::new()
    } else {
        vec![set.to_string()]
    };
    for (column, value) in columns {
        if !named.contains(&column) {
            parts.push(format!("{column} = ?"));
            values.push(value);
        }
    }
    (parts.join(", "), values)
}

/// Writes what the attempt reported so far (a long attempt, every few seconds); `Lost` when the
/// attempt is no longer this replica's.
pub async fn flush<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &mut Reported,
) -> Result<Outcome, DbErr> {
    if reported.is_empty() {
        return Ok(Outcome::Applied);
    }
    let (columns, events) = reported.take(lease);
    let (set, values) = with_columns("", Vec::new(), columns);
    // Log lines alone still go through the guard, so a lost attempt writes nothing.
    let set = if set.is_empty() {
        "lease_owner = lease_owner".to_string()
    } else {
        set
    };
    let Some(job) = guarded_update(db, lease, &set, values).await? else {
        return Ok(Outcome::Lost);
    };
    if !events.is_empty() {
        events::record(db, &job, events, events::JobUpdate::default()).await?;
    }
    Ok(Outcome::Applied)
}

/// A log line of the orchestrator about the attempt.
fn orchestrator_line(lease: &Lease, level: &str, message: String) -> pb::job_event::Event {
    pb::job_event::Event::Log(pb::LogLine {
        task_id: lease.task.id.clone(),
        level: level.to_string(),
        message,
        origin: "orchestrator".to_string(),
    })
}

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
    super::retention::record_refs(db, &job.id, &job.tenant_id, &outputs).await?;
    // A studio job's task: its first output becomes its pair's result in this same transaction.
    super::studio::task_succeeded(
        db,
        &job.id,
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

/// A task's outputs as stored (see [`super::stored_outputs`]).
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
/// still guarded by its lease: one no longer ours is `Lost` and writes nothing. Not for studio jobs,
/// whose success also writes their pair ([`succeed`] does).
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
        let (columns, events) = reported.take(end.lease);
        let source = columns
            .into_iter()
            .find(|(column, _)| *column == "source_info")
            .map_or(sea_orm::Value::Bytes(None), |(_, value)| value);
        let blob = encode_outputs(end.outputs)?;
        rows.push("(?::text, ?::text, ?::integer, ?::bytea, ?::bytea)");
        values.extend([
            end.lease.task.id.clone().into(),
            end.lease.owner.clone().into(),
            end.lease.attempt.into(),
            blob.into(),
            source,
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
        super::retention::record_refs(db, &lease.job.id, &lease.job.tenant_id, end.outputs).await?;
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
    // An unfinished task's job is unfinished too: the jobs come from their in-flight index
    // (`jobs_deadline`, migration m0010), whose states are written into the statement as the
    // index's are, so every plan can use it.
    let rows = db
        .query_all(statement(
            db.get_database_backend(),
            &format!(
                "SELECT t.id FROM jobs j JOIN tasks t ON t.job_id = j.id \
                 WHERE j.state IN ('{}', '{}') AND j.deadline_at IS NOT NULL AND j.deadline_at < ? \
                 AND t.state IN (?, ?, ?) LIMIT ?",
                JobState::Queued.as_str(),
                JobState::Running.as_str()
            ),
            vec![
                now_ms().into(),
                TaskState::Queued.into(),
                TaskState::Running.into(),
                TaskState::RetryWait.into(),
                i64::try_from(limit).unwrap_or(100).into(),
            ],
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
