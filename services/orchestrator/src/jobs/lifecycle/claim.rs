//! A task's start: a batch of runnable tasks claimed by this replica, or one task a worker outside
//! Atelier takes (ReportTask).

use sea_orm::{ConnectionTrait, DbErr};

use super::{orchestrator_line, task_event};
use crate::db::entities::job;
use crate::db::tasks::{self, Claimed, Lease};
use crate::db::{events, jobs};
use crate::domain::{JobState, TaskState};

/// Claims up to `limit` runnable tasks for `owner` ([`tasks::claim`]); each job then records its
/// tasks' start (and its own) as one event row, all in one statement that also moves the job to
/// RUNNING.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Lease>, DbErr> {
    let Claimed {
        tasks: claimed,
        mut jobs,
    } = tasks::claim(db, owner, lease_ms, limit).await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let changes = jobs
        .iter()
        .map(|job| {
            let (mut events, update) = started(job);
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

/// The job's own start when a task of it starts: its event and row change while it is QUEUED.
fn started(job: &job::Model) -> (Vec<atelier_proto::v1::job_event::Event>, events::JobUpdate) {
    let mut events = Vec::with_capacity(3);
    let mut update = events::JobUpdate::default();
    if job.state == JobState::Queued {
        events.push(jobs::state_event(JobState::Running));
        update.state = Some(JobState::Running);
    }
    (events, update)
}

/// A worker outside Atelier takes a waiting task ([`tasks::claim_external`]), with its start
/// recorded and a line saying how long it has to report. `None` when the task is no longer
/// waiting. The caller holds the job's lock.
pub async fn claim_external<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task_id: &str,
    deadline_ms: i64,
) -> Result<Option<Lease>, DbErr> {
    let Some(lease) = tasks::claim_external(db, job, task_id, deadline_ms).await? else {
        return Ok(None);
    };
    let line = format!(
        "attempt {} taken by a worker outside Atelier; it has {:.0} s to report the result",
        lease.attempt,
        deadline_ms as f64 / 1000.0
    );
    let (mut events, update) = started(job);
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
