//! `ReportTask`: a worker outside Atelier (the operator's own, holding the service token) reports the
//! state of a task it works on. Every change goes through the guarded task transitions the dispatcher
//! uses, so events, watchers, webhooks, refunds and the end of the job follow exactly as for results
//! of Atelier's processors.
//!
//! | reported | waiting (queued, retry-wait) | running, taken by the worker | running on a processor | terminal |
//! | --- | --- | --- | --- | --- |
//! | QUEUED | unchanged | 1003 | 1003 | 1003 |
//! | PROCESSING | taken: RUNNING, attempt + 1 | unchanged | 1003 | 1003 |
//! | SUCCEEDED | taken, then SUCCEEDED | SUCCEEDED | 1003 | unchanged if SUCCEEDED, else 1003 |
//! | FAILED | taken, then FAILED 3001, refunded | FAILED 3001, refunded | 1003 | unchanged if FAILED, else 1003 |
//!
//! A taken task keeps no processor busy: its lease is named [`db::tasks::EXTERNAL_OWNER`] and ends at
//! the attempt's deadline of its kind, when the sweeper times it out (1007, refunded) unless the
//! worker reported its end. The result URLs of SUCCEEDED are fetched, checked and stored by a
//! processor (`ImportOutputs`, with the address policy and limits of sources) before the task
//! changes; when one cannot be fetched or is not an image the report is refused with that code
//! (3002, 3005, 3008, 3003, 3004, 3017) and the task stays as it was, so the worker can report again.

use std::time::Duration;

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use sea_orm::{EntityTrait, TransactionTrait};

use super::convert;
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::task, tasks::Lease};
use crate::domain::TaskState;
use crate::error::{ApiError, ApiResult};
use crate::jobs::lifecycle;

/// Most result URLs one report carries.
pub const MAX_RESULT_URLS: usize = 12;
/// Longest result URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest error message kept (longer ones are cut at a character boundary).
const MAX_ERROR_MESSAGE: usize = 2000;
/// How long the processor may take to fetch and store every result.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// What a report does to the task as it is now.
enum Plan {
    /// Nothing to change: answer the task.
    Unchanged,
    /// Take the waiting task.
    Take,
    /// End it with these outputs (taking it first when it waits).
    Succeed,
    /// End it failed and refunded (taking it first when it waits).
    Fail,
}

/// A checked report.
struct Report {
    task_id: String,
    state: pb::ReportedState,
    urls: Vec<String>,
    error_message: String,
}

fn check(req: pb::ReportTaskRequest) -> ApiResult<Report> {
    let task_id = req.task_id.trim().to_string();
    if task_id.is_empty() {
        return Err(ApiError::field("task_id", "name the task"));
    }
    let state = match pb::ReportedState::try_from(req.state) {
        Ok(pb::ReportedState::Unspecified) | Err(_) => {
            return Err(ApiError::field(
                "state",
                "one of QUEUED, PROCESSING, SUCCEEDED, FAILED",
            ))
        }
        Ok(state) => state,
    };
    if state == pb::ReportedState::Succeeded {
        if req.result_urls.is_empty() || req.result_urls.len() > MAX_RESULT_URLS {
            return Err(ApiError::field(
                "result_urls",
                format!("a succeeded task needs 1..={MAX_RESULT_URLS} result URLs"),
            ));
        }
        for (i, url) in req.result_urls.iter().enumerate() {
            let field = format!("result_urls[{i}]");
            if url.trim().is_empty() {
                return Err(ApiError::field(&field, "must be the result's http(s) URL"));
            }
            if url.len() > MAX_URL_LEN {
                return Err(ApiError::field(
                    &field,
                    format!("at most {MAX_URL_LEN} bytes"),
                ));
            }
        }
    } else if !req.result_urls.is_empty() {
        return Err(ApiError::field(
            "result_urls",
            "result URLs go only with SUCCEEDED",
        ));
    }
    let mut error_message = req.error_message.trim().to_string();
    if error_message.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::field(
            "error_message",
            "must not contain control characters",
        ));
    }
    if error_message.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !error_message.is_char_boundary(end) {
            end -= 1;
        }
        error_message.truncate(end);
    }
    Ok(Report {
        task_id,
        state,
        urls: req
            .result_urls
            .into_iter()
            .map(|u| u.trim().to_string())
            .collect(),
        error_message,
    })
}

/// What the report does to `task`, or why it is refused (1003).
fn plan(reported: pb::ReportedState, task: &task::Model) -> ApiResult<Plan> {
    use pb::ReportedState as R;
    let state = task.state;
    let refuse = |why: String| Err(ApiError::field("state", why));
    match state {
        TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled => {
            match (reported, state) {
                (R::Succeeded, TaskState::Succeeded) | (R::Failed, TaskState::Failed) => {
                    Ok(Plan::Unchanged)
                }
                _ => refuse(format!(
                    "the task is already {}; a finished task does not change any more",
                    task.state
                )),
            }
        }
        TaskState::Running if !db::tasks::is_external(task) => refuse(
            "the task is being processed by Atelier; only a waiting task, or one a worker outside Atelier took, can be reported"
                .to_string(),
        ),
        TaskState::Running => match reported {
            R::Queued => refuse(
                "the task was taken by a worker outside Atelier; report PROCESSING, SUCCEEDED or FAILED"
                    .to_string(),
            ),
            R::Processing => Ok(Plan::Unchanged),
            R::Succeeded => Ok(Plan::Succeed),
            R::Failed | R::Unspecified => Ok(Plan::Fail),
        },
        TaskState::Queued | TaskState::RetryWait => match reported {
            R::Queued => Ok(Plan::Unchanged),
            R::Processing => Ok(Plan::Take),
            R::Succeeded => Ok(Plan::Succeed),
            R::Failed | R::Unspecified => Ok(Plan::Fail),
        },
    }
}

/// Serves `ReportTask` for a tenant caller that also presented the service token (both checked by
/// the authentication layer).
pub async fn report(
    ctx: &Context,
    caller: TenantCaller,
    req: pb::ReportTaskRequest,
) -> ApiResult<pb::Task> {
    let report = check(req)?;
    let scope = caller
        .scope(&ctx.db)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    let found = task::Entity::find_by_id(report.task_id.clone())
        .one(&ctx.db)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    let job = db::jobs::find(&ctx.db, &scope, &found.job_id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    // Refused reports fail before any result is fetched; the plan is made again under the lock.
    let first = plan(report.state, &found)?;
    let outputs = match first {
        Plan::Succeed => Some(import(ctx, &job, &found, &report.urls).await?),
        _ => None,
    };
    let changed = apply(ctx, &report, &job.id, outputs.as_deref()).await;
    let changed = match changed {
        Ok(changed) => changed,
        Err(e) => {
            // Stored for a change that did not happen: nothing names these objects.
            if let Some(outputs) = &outputs {
                remove_objects(ctx, outputs).await;
            }
            return Err(e);
        }
    };
    if changed {
        ctx.bus.notify(&job.id);
        ctx.dispatch.wake();
    } else if let Some(outputs) = &outputs {
        remove_objects(ctx, outputs).await;
    }
    let task = task::Entity::find_by_id(report.task_id.clone())
        .one(&ctx.db)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    let mut out = convert::task(&task);
    for output in &mut out.outputs {
        crate::links::output(&ctx.links, output).await;
    }
    Ok(out)
}

/// Makes the change under the job's lock; whether anything changed.
async fn apply(
    ctx: &Context,
    report: &Report,
    job_id: &str,
    outputs: Option<&[pb::Output]>,
) -> ApiResult<bool> {
    let txn = ctx.db.begin().await?;
    let job = db::jobs::lock(&txn, job_id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    let task = task::Entity::find_by_id(report.task_id.clone())
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    let deadline_ms =
        i64::try_from(ctx.policy.attempt_timeout(job.kind).as_millis()).unwrap_or(i64::MAX);
    let taken_meanwhile = || {
        ApiError::field(
            "state",
            "the task changed while the report was handled; report again",
        )
    };
    let changed = match plan(report.state, &task)? {
        Plan::Unchanged => false,
        Plan::Take => {
            lifecycle::claim_external(&txn, &job, &task.id, deadline_ms)
                .await?
                .ok_or_else(taken_meanwhile)?;
            true
        }
        Plan::Succeed => {
            let outputs = outputs.ok_or_else(taken_meanwhile)?.to_vec();
            let lease = take(&txn, job, task, deadline_ms)
                .await?
                .ok_or_else(taken_meanwhile)?;
            let outcome = lifecycle::succeed(
                &txn,
                &lease,
                &lifecycle::Reported::default(),
                outputs,
                false,
                None,
            )
            .await?;
            if outcome != db::tasks::Outcome::Applied {
                return Err(taken_meanwhile());
            }
            true
        }
        Plan::Fail => {
            let message = if report.error_message.is_empty() {
                "the worker outside Atelier reported the task failed".to_string()
            } else {
                report.error_message.clone()
            };
            let failure = lifecycle::failure(ErrorCode::ModelCallFailed, &message);
            let lease = take(&txn, job, task, deadline_ms)
                .await?
                .ok_or_else(taken_meanwhile)?;
            let outcome =
                lifecycle::fail(&txn, &lease, &lifecycle::Reported::default(), failure, None)
                    .await?;
            if outcome != db::tasks::Outcome::Applied {
                return Err(taken_meanwhile());
            }
            true
        }
    };
    txn.commit().await?;
    Ok(changed)
}

/// The worker's lease of the task: its own when it took the task already, else taken now.
async fn take<C: sea_orm::ConnectionTrait>(
    txn: &C,
    job: db::entities::job::Model,
    task: task::Model,
    deadline_ms: i64,
) -> ApiResult<Option<Lease>> {
    if db::tasks::is_external(&task) {
        return Ok(Some(db::tasks::external_lease(task, job)));
    }
    Ok(lifecycle::claim_external(txn, &job, &task.id, deadline_ms).await?)
}

/// Has a processor fetch, check and store the results; its refusal is the report's.
async fn import(
    ctx: &Context,
    job: &db::entities::job::Model,
    task: &task::Model,
    urls: &[String],
) -> ApiResult<Vec<pb::Output>> {
    let request = pb::ImportOutputsRequest {
        job_id: job.id.clone(),
        task_id: task.id.clone(),
        tenant_id: job.tenant_id.clone(),
        urls: urls.to_vec(),
        // A prefix of its own per report: objects of a report that ends up not applied never mix
        // with those of the one that is.
        output_prefix: format!(
            "t/{}/jobs/{}/{}/reported-{}",
            job.tenant_id,
            job.id,
            task.id,
            uuid::Uuid::new_v4().simple()
        ),
    };
    let mut client = ctx.processors.pick();
    let call = ctx.processors.request(request, IMPORT_TIMEOUT);
    match client.import_outputs(call).await {
        Ok(answer) => Ok(answer.into_inner().outputs),
        // A status made here from a transport error (no processor reachable) has a source; one the
        // processor sent does not, and carries the refusal's code.
        Err(status)
            if std::error::Error::source(&status).is_none()
                && status.code() != tonic::Code::DeadlineExceeded =>
        {
            Err(ApiError::Relayed(status))
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "importing reported results failed");
            Err(ApiError::Unavailable(
                "no processor could fetch and store the results in time; report again".to_string(),
            ))
        }
    }
}

/// Removes objects stored for a report that changed nothing (best effort: a leftover is only space).
async fn remove_objects(ctx: &Context, outputs: &[pb::Output]) {
    for output in outputs {
        let keys = std::iter::once(output.key.as_str())
            .chain(output.thumbnail.as_ref().map(|t| t.key.as_str()));
        for key in keys {
            if let Err(e) = ctx.storage.delete(key).await {
                tracing::warn!(key, error = %e, "an object of an unapplied report was left");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_in(state: &str, owner: Option<&str>) -> task::Model {
        task::Model {
            id: "t".into(),
            job_id: "j".into(),
            idx: 0,
            source: None,
            source_ref: None,
            state: TaskState::parse(state).expect("a task state"),
            attempts: 1,
            stage: String::new(),
            percent: 0,
            outputs: None,
            source_info: None,
            failure_code: None,
            failure_message: None,
            from_cache: false,
            lease_owner: owner.map(str::to_string),
            lease_expires_at: None,
            run_after: 0,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    fn refused(reported: pb::ReportedState, task: &task::Model) -> bool {
        matches!(plan(reported, task), Err(ApiError::BadRequest(_)))
    }

    #[test]
    fn the_table_of_the_module_doc_holds() {
        use pb::ReportedState as R;
        let queued = task_in("queued", None);
        let waiting = task_in("retry_wait", None);
        let taken = task_in("running", Some(db::tasks::EXTERNAL_OWNER));
        let ours = task_in("running", Some("replica-1"));
        let done = task_in("succeeded", None);
        let failed = task_in("failed", None);
        let cancelled = task_in("cancelled", None);
        for t in [&queued, &waiting] {
            assert!(matches!(plan(R::Queued, t), Ok(Plan::Unchanged)));
            assert!(matches!(plan(R::Processing, t), Ok(Plan::Take)));
            assert!(matches!(plan(R::Succeeded, t), Ok(Plan::Succeed)));
            assert!(matches!(plan(R::Failed, t), Ok(Plan::Fail)));
        }
        assert!(refused(R::Queued, &taken));
        assert!(matches!(plan(R::Processing, &taken), Ok(Plan::Unchanged)));
        assert!(matches!(plan(R::Succeeded, &taken), Ok(Plan::Succeed)));
        assert!(matches!(plan(R::Failed, &taken), Ok(Plan::Fail)));
        for r in [R::Queued, R::Processing, R::Succeeded, R::Failed] {
            assert!(refused(r, &ours), "{r:?} on a task of a processor");
            assert!(refused(r, &cancelled), "{r:?} on a cancelled task");
        }
        assert!(matches!(plan(R::Succeeded, &done), Ok(Plan::Unchanged)));
        assert!(refused(R::Failed, &done));
        assert!(refused(R::Processing, &done));
        assert!(matches!(plan(R::Failed, &failed), Ok(Plan::Unchanged)));
        assert!(refused(R::Succeeded, &failed));
        assert!(refused(R::Queued, &failed));
    }

    #[test]
    fn reports_are_checked_before_anything_happens() {
        let base = pb::ReportTaskRequest {
            task_id: "t".into(),
            state: pb::ReportedState::Succeeded as i32,
            result_urls: vec!["https://example.com/a.png".into()],
            error_message: String::new(),
        };
        assert!(check(base.clone()).is_ok());
        assert!(check(pb::ReportTaskRequest {
            result_urls: vec![],
            ..base.clone()
        })
        .is_err());
        assert!(check(pb::ReportTaskRequest {
            result_urls: vec!["https://example.com/a.png".into(); 13],
            ..base.clone()
        })
        .is_err());
        assert!(check(pb::ReportTaskRequest {
            state: 99,
            ..base.clone()
        })
        .is_err());
        assert!(check(pb::ReportTaskRequest {
            state: pb::ReportedState::Failed as i32,
            ..base.clone()
        })
        .is_err());
        let long = check(pb::ReportTaskRequest {
            state: pb::ReportedState::Failed as i32,
            result_urls: vec![],
            error_message: "失败".repeat(2000),
            ..base
        })
        .expect("a long message is cut, not refused");
        assert!(long.error_message.len() <= MAX_ERROR_MESSAGE);
    }
}
