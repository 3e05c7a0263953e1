//! What the sweepers find and change (expired leases, tasks that waited too long in the queue or
//! whose job's deadline passed), and a job's cancelled tasks.

use atelier_proto::v1 as pb;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::code_number;
use crate::db::entities::{job, task};
use crate::db::{jobs, statement};
use crate::domain::{now_ms, JobState, TaskState};

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

/// What taking over an expired lease did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The task went back to the queue.
    Requeued,
    /// Its attempts were spent: it failed with `failure`.
    Failed,
    /// The lease was renewed or the task changed since it was read: nothing was written.
    Unchanged,
}

/// Takes over an expired lease: the task goes back to the queue, or fails with `failure` once its
/// attempts are spent. The caller holds the job's lock.
pub async fn recover<C: ConnectionTrait>(
    db: &C,
    task: &task::Model,
    max_attempts: i32,
    failure: &pb::Failure,
) -> Result<Recovered, DbErr> {
    let exhausted = task.attempts >= max_attempts;
    let (set, mut values): (&str, Vec<sea_orm::Value>) = if exhausted {
        (
            "state = ?, failure_code = ?, failure_message = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL",
            vec![
                TaskState::Failed.into(),
                code_number(failure.code).into(),
                failure.message.clone().into(),
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
            db.get_database_backend(),
            &format!("UPDATE tasks SET {set} WHERE id = ? AND state = ? AND attempts = ? AND lease_expires_at < ?"),
            values,
        ))
        .await?;
    Ok(match (r.rows_affected(), exhausted) {
        (0, _) => Recovered::Unchanged,
        (_, true) => Recovered::Failed,
        (_, false) => Recovered::Requeued,
    })
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
                 WHERE j.state IN ({}) AND j.deadline_at IS NOT NULL AND j.deadline_at < ? \
                 AND t.state IN (?, ?, ?) LIMIT ?",
                crate::db::state_words(&JobState::ACTIVE)
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

/// Fails an unfinished (queued, running or retry-wait) task with `failure`; `false` when it had
/// ended already. The caller holds the job's lock.
pub async fn fail_unfinished<C: ConnectionTrait>(
    db: &C,
    task: &task::Model,
    failure: &pb::Failure,
) -> Result<bool, DbErr> {
    let r = db
        .execute(statement(
            db.get_database_backend(),
            "UPDATE tasks SET state = ?, failure_code = ?, failure_message = ?, finished_at = ?, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ? AND state IN (?, ?, ?)",
            vec![
                TaskState::Failed.into(),
                code_number(failure.code).into(),
                failure.message.clone().into(),
                now_ms().into(),
                task.id.clone().into(),
                TaskState::Queued.into(),
                TaskState::Running.into(),
                TaskState::RetryWait.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Cancels every task of the job not yet terminal and returns them as they were. The caller holds
/// the job's lock.
pub async fn cancel<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
) -> Result<Vec<task::Model>, DbErr> {
    let now = now_ms();
    let mut cancelled = Vec::new();
    for t in jobs::tasks_of(db, std::slice::from_ref(&job.id)).await? {
        if t.state.is_terminal() {
            continue;
        }
        let mut model: task::ActiveModel = t.clone().into();
        model.state = Set(TaskState::Cancelled);
        model.lease_owner = Set(None);
        model.lease_expires_at = Set(None);
        model.finished_at = Set(Some(now));
        model.update(db).await?;
        cancelled.push(t);
    }
    Ok(cancelled)
}
