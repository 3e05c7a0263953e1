//! What the sweepers find and change: expired leases, tasks that waited too long in the queue or
//! whose job's deadline passed.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{code_number, failure, task_event};
use crate::db::entities::task;
use crate::db::{accounts, events, jobs, statement};
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
