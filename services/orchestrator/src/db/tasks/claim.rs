//! Claims: a batch of runnable tasks taken in one statement, and a task a worker outside Atelier
//! takes (ReportTask).

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult, IdenStatic,
    Iterable, QueryFilter,
};

use super::Lease;
use crate::db::entities::{job, task};
use crate::db::statement;
use crate::domain::{now_ms, TaskState};

/// Tasks claimed in one statement, in the order they were waiting, and their jobs (by id) as they
/// were read with them.
#[derive(Debug, Default)]
pub struct Claimed {
    pub tasks: Vec<task::Model>,
    pub jobs: Vec<job::Model>,
}

/// Claims up to `limit` runnable tasks for `owner` in one statement: each becomes RUNNING with a lease,
/// its attempt counted. On PostgreSQL the candidates and their jobs are locked `FOR UPDATE SKIP
/// LOCKED`, so replicas never claim the same task and never wait on each other; a task whose job row
/// is busy is left for the next round rather than waited for, which keeps the lock order (job, then
/// task) of every other change.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Claimed, DbErr> {
    let backend = db.get_database_backend();
    let now = now_ms();
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE OF t, j SKIP LOCKED"
    } else {
        ""
    };
    let picked = format!(
        "picked AS (SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id \
         WHERE t.state IN (?, ?) AND t.run_after <= ? ORDER BY t.run_after, t.created_at, t.idx LIMIT ?{lock})"
    );
    let update = "UPDATE tasks SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, \
         started_at = COALESCE(started_at, ?), stage = '', percent = 0 \
         WHERE id IN (SELECT id FROM picked) RETURNING *";
    let values = vec![
        TaskState::Queued.into(),
        TaskState::RetryWait.into(),
        now.into(),
        i64::try_from(limit).unwrap_or(1).into(),
        TaskState::Running.into(),
        owner.into(),
        (now + lease_ms).into(),
        now.into(),
    ];
    let (mut claimed, mut jobs) = if backend == DatabaseBackend::Postgres {
        // The claimed tasks come back with their jobs (locked above), in the one round trip.
        let job_columns = job::Column::iter()
            .map(|c| format!("j.{0} AS j_{0}", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH {picked}, claimed AS ({update}) SELECT claimed.*, {job_columns} \
             FROM claimed JOIN jobs j ON j.id = claimed.job_id"
        );
        let rows = db.query_all(statement(backend, &sql, values)).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut jobs: Vec<job::Model> = Vec::new();
        for row in rows {
            let task = task::Model::from_query_result(&row, "")?;
            if !jobs.iter().any(|j| j.id == task.job_id) {
                jobs.push(job::Model::from_query_result(&row, "j_")?);
            }
            claimed.push(task);
        }
        (claimed, jobs)
    } else {
        let claimed = task::Entity::find()
            .from_raw_sql(statement(
                backend,
                &format!("WITH {picked} {update}"),
                values,
            ))
            .all(db)
            .await?;
        let mut job_ids: Vec<String> = claimed.iter().map(|t| t.job_id.clone()).collect();
        job_ids.sort();
        job_ids.dedup();
        let jobs = job::Entity::find()
            .filter(job::Column::Id.is_in(job_ids))
            .all(db)
            .await?;
        (claimed, jobs)
    };
    claimed.sort_by(|a, b| {
        (a.run_after, a.created_at, a.idx).cmp(&(b.run_after, b.created_at, b.idx))
    });
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Claimed {
        tasks: claimed,
        jobs,
    })
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
    Ok(Some(external_lease(task, job.clone())))
}
