//! What the sweepers do to a task: take over its expired lease, or fail it for running out of time.

use atelier_codes::ErrorCode;
use sea_orm::{ConnectionTrait, DbErr};

use super::{failure, record_with_end, task_event};
use crate::db::entities::{job, task};
use crate::db::tasks::{self, Recovered};
use crate::db::{accounts, events, jobs};
use crate::domain::TaskState;

/// Takes over an expired lease: the task goes back to the queue, or fails once its attempts are
/// spent (1008 refunded, and the job ends when this was its last task). `false` when the lease was
/// renewed or the task changed since it was read.
pub async fn recover<C: ConnectionTrait>(
    db: &C,
    task: &task::Model,
    max_attempts: i32,
) -> Result<bool, DbErr> {
    let Some(job) = jobs::lock(db, &task.job_id).await? else {
        return Ok(false);
    };
    let failure = failure(
        ErrorCode::Unavailable,
        "the task lost its processor or orchestrator too many times",
    );
    match tasks::recover(db, task, max_attempts, &failure).await? {
        Recovered::Unchanged => Ok(false),
        Recovered::Requeued => {
            let event = task_event(&task.id, TaskState::Queued, task.attempts, None, None);
            events::append(db, &job, event).await?;
            Ok(true)
        }
        Recovered::Failed => {
            failed(db, &job, task, failure, "task failed").await?;
            record_with_end(db, &job, Vec::new()).await?;
            Ok(true)
        }
    }
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
    let failure = failure(ErrorCode::TimedOut, message);
    if !tasks::fail_unfinished(db, task, &failure).await? {
        return Ok(false);
    }
    failed(db, &job, task, failure, "task timed out").await?;
    if task.state == TaskState::Running {
        events::announce_cancel(db, std::slice::from_ref(&task.id)).await?;
    }
    record_with_end(db, &job, Vec::new()).await?;
    Ok(true)
}

/// What follows a task the sweeper failed: its event, and its refund for `reason`.
async fn failed<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task: &task::Model,
    failure: atelier_proto::v1::Failure,
    reason: &str,
) -> Result<(), DbErr> {
    let event = task_event(
        &task.id,
        TaskState::Failed,
        task.attempts,
        Some(failure),
        None,
    );
    events::append(db, job, event).await?;
    accounts::refund_task(db, job, &task.id, reason).await?;
    Ok(())
}
