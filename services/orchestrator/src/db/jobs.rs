//! Jobs: insert with their tasks, lookup within a tenant, listing, and the state their tasks end them in.

use atelier_proto::v1 as pb;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    IdenStatic, Iterable, ModelTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{job, task};
use super::events;
use crate::domain::{final_job_state, now_ms, JobState, Kind, TaskState};

/// A task to create with its job.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// Encoded `pb::Source` as the caller gave it.
    pub source: Option<Vec<u8>>,
    /// Encoded `pb::SourceRef` the processor reads.
    pub source_ref: Option<Vec<u8>>,
}

/// Inserts a job, its tasks and its first event; returns the job and its tasks as written. The
/// caller has charged the account in the same transaction.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    job: job::Model,
    tasks: Vec<NewTask>,
) -> Result<(job::Model, Vec<task::Model>), DbErr> {
    let (job, written) = new_job(job, tasks);
    job::ActiveModel::from(job.clone()).insert(db).await?;
    if !written.is_empty() {
        // One statement for every task of the job.
        task::Entity::insert_many(written.iter().cloned().map(task::ActiveModel::from))
            .exec_without_returning(db)
            .await?;
    }
    events::record_first(db, &job, vec![state_event(JobState::Queued)]).await?;
    Ok((job, written))
}

/// A new job as it is written, its first event (QUEUED) already counted, and its tasks.
fn new_job(mut job: job::Model, tasks: Vec<NewTask>) -> (job::Model, Vec<task::Model>) {
    job.last_sequence = 1;
    let now = job.created_at;
    let tasks = tasks
        .into_iter()
        .enumerate()
        .map(|(idx, t)| task::Model {
            id: uuid::Uuid::now_v7().to_string(),
            job_id: job.id.clone(),
            idx: i32::try_from(idx).unwrap_or(i32::MAX),
            source: t.source,
            source_ref: t.source_ref,
            state: TaskState::Queued,
            attempts: 0,
            stage: String::new(),
            percent: 0,
            outputs: None,
            source_info: None,
            failure_code: None,
            failure_message: None,
            from_cache: false,
            lease_owner: None,
            lease_expires_at: None,
            run_after: now,
            created_at: now,
            started_at: None,
            finished_at: None,
        })
        .collect();
    (job, tasks)
}

/// A new job charged to its account and inserted with its tasks and first event, in one statement
/// (PostgreSQL): no round trip to the caller happens while the account's row is locked, so the
/// submits of one account follow each other as fast as the database commits. The charge is
/// guarded: the balance pays `cost`, and the account's `submits` counter is at most
/// `submits_at_most`, which the caller derives from its read of the account so that the
/// active-jobs limit cannot be passed. When a guard does not hold nothing is written and `None`
/// comes back, for the caller to submit the job the careful way. Returns the job and its tasks.
pub async fn insert_charged<C: ConnectionTrait>(
    db: &C,
    job: job::Model,
    tasks: Vec<NewTask>,
    cost: i64,
    submits_at_most: i64,
) -> Result<Option<(job::Model, Vec<task::Model>)>, DbErr> {
    let (job, tasks) = new_job(job, tasks);
    let backend = db.get_database_backend();
    let mut values: Vec<sea_orm::Value> = vec![
        cost.into(),
        job.account_id.clone().into(),
        cost.into(),
        submits_at_most.into(),
    ];
    let job_values = values_of(&job);
    let job_placeholders = placeholders(job_values.len());
    values.extend(job_values);
    let mut task_rows = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let row_values = values_of(t);
        task_rows.push(format!("SELECT {} FROM j", placeholders(row_values.len())));
        values.extend(row_values);
    }
    let (event_columns, event_values) =
        events::first_row(&job, vec![state_event(JobState::Queued)])?;
    let event_placeholders = placeholders(event_values.len());
    values.extend(event_values);
    values.push(events::EVENTS_CHANNEL.into());
    let tasks_cte = if task_rows.is_empty() {
        String::new()
    } else {
        format!(
            "t AS (INSERT INTO tasks ({}) {}), ",
            columns_of::<task::Entity>(),
            task_rows.join(" UNION ALL ")
        )
    };
    let sql = format!(
        "WITH charge AS (UPDATE accounts SET balance = balance - ?, submits = submits + 1 \
         WHERE id = ? AND balance - ? >= 0 AND submits <= ? RETURNING submits), \
         j AS (INSERT INTO jobs ({}) SELECT {job_placeholders} FROM charge RETURNING id), \
         {tasks_cte}\
         e AS (INSERT INTO job_events {event_columns} SELECT {event_placeholders} FROM j RETURNING job_id) \
         SELECT (SELECT COUNT(pg_notify(?, e.job_id)) FROM e) FROM charge",
        columns_of::<job::Entity>(),
    );
    let charged = db
        .query_one(super::statement(backend, &sql, values))
        .await?;
    Ok(charged.map(|_| (job, tasks)))
}

/// An entity's columns, comma-separated, in the order [`values_of`] gives its values.
fn columns_of<E: EntityTrait>() -> String {
    E::Column::iter()
        .map(|c| c.as_str().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model's values in the order of its entity's columns.
fn values_of<M: ModelTrait>(model: &M) -> Vec<sea_orm::Value> {
    <M::Entity as EntityTrait>::Column::iter()
        .map(|c| model.get(c))
        .collect()
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The event of the job moving to `state`.
pub fn state_event(state: JobState) -> pb::job_event::Event {
    pb::job_event::Event::JobState(pb::JobStateChanged {
        state: state.to_proto() as i32,
        failure: None,
    })
}

/// The job-row change that ends a job in `state`.
pub fn ending(state: JobState) -> events::JobUpdate {
    events::JobUpdate {
        state: Some(state),
        finished_at: Some(now_ms()),
    }
}

pub use super::Scope;

/// The job with this id if the scope may see it. Other tenants' jobs look exactly like missing ones.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &str,
) -> Result<Option<job::Model>, DbErr> {
    let mut query =
        job::Entity::find_by_id(id.to_string()).filter(job::Column::TenantId.eq(&scope.tenant_id));
    if let Some(account_id) = &scope.account_id {
        query = query.filter(job::Column::AccountId.eq(account_id));
    }
    query.one(db).await
}

/// Reads the job and, on PostgreSQL, locks its row until the transaction ends. Every change of a job's
/// tasks takes this lock first, so concurrent task updates of one job serialise and the last one sees
/// every task terminal. SQLite has one writer, which serialises them already.
pub async fn lock<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<job::Model>, DbErr> {
    let mut query = job::Entity::find_by_id(id.to_string());
    if db.get_database_backend() == DatabaseBackend::Postgres {
        query = query.lock_exclusive();
    }
    query.one(db).await
}

/// Locks these jobs' rows (PostgreSQL), in the order given, until the transaction ends.
pub async fn lock_all<C: ConnectionTrait>(db: &C, ids: &[String]) -> Result<(), DbErr> {
    if ids.is_empty() || db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    db.query_all(super::statement(
        DatabaseBackend::Postgres,
        &format!("SELECT id FROM jobs WHERE id IN ({marks}) ORDER BY id FOR UPDATE"),
        ids.iter().map(|id| id.clone().into()).collect(),
    ))
    .await?;
    Ok(())
}

/// The job an account already submitted with this idempotency key.
pub async fn find_by_idempotency<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    key: &str,
) -> Result<Option<job::Model>, DbErr> {
    job::Entity::find()
        .filter(job::Column::AccountId.eq(account_id))
        .filter(job::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// The tasks of these jobs, in job and index order.
pub async fn tasks_of<C: ConnectionTrait>(
    db: &C,
    job_ids: &[String],
) -> Result<Vec<task::Model>, DbErr> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    task::Entity::find()
        .filter(task::Column::JobId.is_in(job_ids.iter().cloned()))
        .order_by_asc(task::Column::JobId)
        .order_by_asc(task::Column::Idx)
        .all(db)
        .await
}

/// Filters of ListJobs, already validated.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub kind: Option<Kind>,
    pub account_id: Option<String>,
    /// `"key":"value"` as it appears in the stored JSON labels.
    pub label: Option<(String, String)>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// Continue after this (created_at, id), newest first.
    pub after: Option<(i64, String)>,
}

/// A page of jobs, newest first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    filter: &ListFilter,
    limit: u64,
) -> Result<Vec<job::Model>, DbErr> {
    let mut query = job::Entity::find().filter(job::Column::TenantId.eq(tenant_id));
    if let Some(state) = filter.state {
        query = query.filter(job::Column::State.eq(state));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(job::Column::Kind.eq(kind));
    }
    if let Some(account_id) = &filter.account_id {
        query = query.filter(job::Column::AccountId.eq(account_id));
    }
    if let Some((key, value)) = &filter.label {
        // Labels are stored as compact JSON, so a pair appears as this exact text.
        let pair = serde_json::to_string(&serde_json::json!({ key: value })).unwrap_or_default();
        let inner = pair
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_string();
        query = query.filter(job::Column::Labels.contains(inner));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(job::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(job::Column::CreatedAt.lt(to));
    }
    if let Some((created_at, id)) = &filter.after {
        query = query.filter(
            Condition::any()
                .add(job::Column::CreatedAt.lt(*created_at))
                .add(
                    Condition::all()
                        .add(job::Column::CreatedAt.eq(*created_at))
                        .add(job::Column::Id.lt(id.clone())),
                ),
        );
    }
    query
        .order_by_desc(job::Column::CreatedAt)
        .order_by_desc(job::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The state the job ends in now that all its tasks are terminal; `None` while one is not, or when
/// the job has ended already. Call with the job locked.
pub async fn final_state<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
) -> Result<Option<JobState>, DbErr> {
    if job.state.is_terminal() {
        return Ok(None);
    }
    Ok(final_states(db, std::slice::from_ref(&job.id))
        .await?
        .remove(&job.id))
}

/// [`final_state`] of several jobs in one read: the jobs that are not terminal yet but whose tasks
/// all are, with the state each ends in.
pub async fn final_states<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<std::collections::HashMap<String, JobState>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        job_id: String,
        job_state: JobState,
        state: TaskState,
        failure_code: Option<i32>,
    }
    let mut ended = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(ended);
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let rows = <Row as sea_orm::FromQueryResult>::find_by_statement(super::statement(
        db.get_database_backend(),
        &format!(
            "SELECT t.job_id, j.state AS job_state, t.state, t.failure_code FROM tasks t \
             JOIN jobs j ON j.id = t.job_id WHERE t.job_id IN ({marks}) ORDER BY t.job_id, t.idx"
        ),
        ids.iter().map(|id| id.clone().into()).collect(),
    ))
    .all(db)
    .await?;
    for of_job in rows.chunk_by(|a, b| a.job_id == b.job_id) {
        let Some(first) = of_job.first() else {
            continue;
        };
        let states: Vec<TaskState> = of_job.iter().map(|t| t.state).collect();
        if first.job_state.is_terminal() || !states.iter().all(|s| s.is_terminal()) {
            continue;
        }
        let mut state = final_job_state(&states, false);
        // A task that succeeded with some of its units failed (a pose set missing shots) makes the
        // job partial: the failed units were refunded and the task carries their failure.
        if state == JobState::Succeeded && of_job.iter().any(|t| t.failure_code.is_some()) {
            state = JobState::PartiallySucceeded;
        }
        ended.insert(first.job_id.clone(), state);
    }
    Ok(ended)
}

/// Where a queued job waits: runnable tasks of earlier jobs ahead of it, and a time estimate from
/// `mean_ms`, the recent mean run time of its kind ([`mean_task_ms`], which callers cache).
pub async fn queue_position<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    mean_ms: f64,
) -> Result<(u32, u32), DbErr> {
    Ok(position_of(queue_ahead(db, job).await?, mean_ms))
}

/// The waiting tasks of earlier jobs: those ahead of a queued job.
pub async fn queue_ahead<C: ConnectionTrait>(db: &C, job: &job::Model) -> Result<i64, DbErr> {
    Ok(db
        .query_one(super::statement(
            db.get_database_backend(),
            &count_ahead(),
            count_ahead_values(job).to_vec(),
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or_default())
}

/// The count of [`queue_ahead`], with [`count_ahead_values`] for its parameters. A task has its
/// job's creation time, so the count reads the queue's own index (`tasks_queue_order`, migration
/// m0010) and no job row. Its states are written into the statement, as the index's are, so every
/// plan can use it.
fn count_ahead() -> String {
    format!(
        "{} AND (created_at < ? OR (created_at = ? AND job_id < ?))",
        super::count_waiting()
    )
}

fn count_ahead_values(job: &job::Model) -> [sea_orm::Value; 3] {
    [
        job.created_at.into(),
        job.created_at.into(),
        job.id.clone().into(),
    ]
}

/// A queue position from the number of waiting tasks ahead, with its time estimate.
pub fn position_of(ahead: i64, mean_ms: f64) -> (u32, u32) {
    let position = u32::try_from(ahead).unwrap_or(u32::MAX);
    (position, estimate_seconds(mean_ms, position))
}

/// Mean run time of the last 50 succeeded tasks of a kind (0 when none ran yet).
pub async fn mean_task_ms<C: ConnectionTrait>(db: &C, kind: Kind) -> Result<f64, DbErr> {
    Ok(db
        .query_one(super::statement(
            db.get_database_backend(),
            // The newest finished tasks come from their index (`tasks_finished`), each job's kind
            // by its key: a join here let a planner without statistics yet (a young table) pair
            // every task with every job.
            "SELECT AVG(CAST(r.finished_at - r.started_at AS DOUBLE PRECISION)) FROM \
             (SELECT t.finished_at, t.started_at FROM tasks t \
              WHERE t.finished_at IS NOT NULL AND t.state = ? AND t.started_at IS NOT NULL \
              AND (SELECT j.kind FROM jobs j WHERE j.id = t.job_id) = ? \
              ORDER BY t.finished_at DESC LIMIT 50) r",
            vec![TaskState::Succeeded.into(), kind.into()],
        ))
        .await?
        .and_then(|r| r.try_get_by_index::<Option<f64>>(0).ok().flatten())
        .unwrap_or(0.0))
}

/// Seconds until a job with `position` tasks ahead is done, one task at a time of `mean_ms` each.
pub fn estimate_seconds(mean_ms: f64, position: u32) -> u32 {
    let seconds = (mean_ms / 1000.0 * f64::from(position.saturating_add(1))).ceil();
    if seconds.is_finite() && seconds > 0.0 {
        seconds.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// The job's state and last event sequence.
pub async fn state_and_sequence<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<(JobState, i64)>, DbErr> {
    let job = job::Entity::find_by_id(id.to_string()).one(db).await?;
    Ok(job.map(|j| (j.state, j.last_sequence)))
}
