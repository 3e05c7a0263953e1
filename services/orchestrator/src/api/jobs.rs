//! JobService: submit (one job, or a batch of jobs holding one active-jobs unit), read, list, cancel
//! and watch jobs.

use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_server::JobService;
use base64::Engine as _;
use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, page_size, upload, watch};
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::job, jobs::Scope};
use crate::domain::{from_timestamp, JobState, Kind};
use crate::error::{ApiError, ApiResult};
use crate::jobs::submission::{BatchRequest, Submission};
use crate::jobs::{Submitted, Submitter};
use crate::layers::CallContext;

/// The JobService implementation.
pub struct Jobs {
    ctx: Context,
    submitter: Submitter,
}

impl Jobs {
    /// Serves jobs from the shared context.
    pub fn new(ctx: Context) -> Self {
        Self {
            submitter: Submitter::new(ctx.clone()),
            ctx,
        }
    }

    async fn scope(&self, caller: &TenantCaller) -> ApiResult<Scope> {
        caller
            .scope(&self.ctx.db)
            .await?
            .ok_or(ApiError::NotFound("job"))
    }

    async fn load(&self, scope: &Scope, job_id: &str) -> ApiResult<pb::Job> {
        let job = db::jobs::find(&self.ctx.db, scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        self.render(job).await
    }

    /// The job as the API shows it, its tasks read and, when it is queued, its queue position.
    pub(crate) async fn render(&self, job: job::Model) -> ApiResult<pb::Job> {
        let tasks = db::jobs::tasks_of(&self.ctx.db, std::slice::from_ref(&job.id)).await?;
        self.render_with(job, &tasks).await
    }

    /// [`Self::render`] of a job whose tasks are at hand (a batch's new jobs).
    async fn render_with(
        &self,
        job: job::Model,
        tasks: &[db::entities::task::Model],
    ) -> ApiResult<pb::Job> {
        let ahead = if job.state == JobState::Queued {
            Some(db::jobs::queue_ahead(&self.ctx.db, &job).await?)
        } else {
            None
        };
        self.view(job, tasks, ahead).await
    }

    /// What a submit made, as the API shows it.
    pub(crate) async fn show(&self, submitted: Submitted) -> ApiResult<pb::Job> {
        match submitted {
            Submitted::New { job, tasks, ahead } => self.view(job, &tasks, Some(ahead)).await,
            Submitted::Replayed(job) => self.render(job).await,
        }
    }

    /// The job as the API shows it, with the waiting tasks ahead of it when it is queued.
    async fn view(
        &self,
        job: job::Model,
        tasks: &[db::entities::task::Model],
        ahead: Option<i64>,
    ) -> ApiResult<pb::Job> {
        let mut out = convert::job(&job, tasks);
        crate::links::job(&self.ctx.links, &mut out).await;
        if let Some(ahead) = ahead {
            let mean_ms = self.ctx.run_times.mean_ms(&self.ctx.db, job.kind).await?;
            (out.queue_position, out.estimated_seconds) = db::jobs::position_of(ahead, mean_ms);
        }
        Ok(out)
    }

    async fn list(
        &self,
        caller: TenantCaller,
        req: pb::ListJobsRequest,
    ) -> ApiResult<pb::ListJobsResponse> {
        let limit = page_size(req.page_size, 20, 100)?;
        let mut filter = db::jobs::ListFilter::default();
        if req.state != 0 {
            let state = pb::JobState::try_from(req.state)
                .ok()
                .and_then(JobState::from_proto);
            filter.state =
                Some(state.ok_or_else(|| ApiError::field("state", "unknown job state"))?);
        }
        if req.kind != 0 {
            let kind = pb::JobKind::try_from(req.kind)
                .ok()
                .and_then(Kind::from_proto);
            filter.kind = Some(kind.ok_or_else(|| ApiError::field("kind", "unknown job kind"))?);
        }
        if !req.label.is_empty() {
            let (k, v) = req
                .label
                .split_once('=')
                .ok_or_else(|| ApiError::field("label", "expected key=value"))?;
            filter.label = Some((k.to_string(), v.to_string()));
        }
        if let Some(range) = &req.created {
            filter.created_from = range.start.as_ref().map(crate::domain::from_timestamp);
            filter.created_to = range.end.as_ref().map(crate::domain::from_timestamp);
        }
        if !req.page_token.is_empty() {
            filter.after = Some(decode_token(&req.page_token)?);
        }
        let Some(scope) = caller.scope(&self.ctx.db).await? else {
            return Ok(pb::ListJobsResponse::default());
        };
        filter.account_id = scope.account_id.clone();
        if !req.account.is_empty() && scope.account_id.is_none() {
            match db::accounts::find(&self.ctx.db, &caller.tenant_id, &req.account).await? {
                Some(a) => filter.account_id = Some(a.id),
                None => return Ok(pb::ListJobsResponse::default()),
            }
        }
        let jobs = db::jobs::list(&self.ctx.db, &scope.tenant_id, &filter, limit).await?;
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let tasks = db::jobs::tasks_of(&self.ctx.db, &ids).await?;
        let next_page_token = match jobs.last() {
            Some(last) if jobs.len() as u64 == limit => encode_token(last.created_at, &last.id),
            _ => String::new(),
        };
        let mut jobs: Vec<pb::Job> = jobs.iter().map(|j| convert::job(j, &tasks)).collect();
        for job in &mut jobs {
            crate::links::job(&self.ctx.links, job).await;
        }
        Ok(pb::ListJobsResponse {
            jobs,
            next_page_token,
        })
    }

    async fn cancel(&self, caller: TenantCaller, job_id: &str) -> ApiResult<pb::Job> {
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let txn = self.ctx.db.begin().await?;
        let job = db::jobs::lock(&txn, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let running = crate::jobs::lifecycle::cancel(&txn, &job).await?;
        txn.commit().await?;
        self.ctx.dispatch.cancel(&running);
        self.ctx.bus.notify(job_id);
        self.load(&scope, job_id).await
    }

    async fn delete(&self, caller: TenantCaller, job_id: &str) -> ApiResult<pb::DeleteJobResponse> {
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let txn = self.ctx.db.begin().await?;
        let job = db::jobs::lock(&txn, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let terminal = job.state.is_terminal();
        if !terminal {
            return Err(ApiError::field(
                "job_id",
                format!(
                    "the job is {}; only a finished job can be deleted (cancel it first)",
                    job.state
                ),
            ));
        }
        let purged = db::retention::purge_job(&txn, &job.tenant_id, job_id).await?;
        txn.commit().await?;
        self.ctx.metrics.removed("jobs", 1);
        // Watchers of the job see it gone and end.
        self.ctx.bus.notify(job_id);
        // The rows are gone; objects that cannot be removed now stay in the outbox for the sweeper.
        let deleted = match crate::retention::remove_objects(
            &self.ctx.db,
            &self.ctx.storage,
            &self.ctx.metrics,
            &purged.queued,
        )
        .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "objects of a deleted job left for the sweeper");
                0
            }
        };
        tracing::info!(job_id, objects = deleted, kept = purged.kept, "job deleted");
        Ok(pb::DeleteJobResponse {
            job_id: job_id.to_string(),
            objects_deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
            objects_kept: purged.kept,
        })
    }

    async fn remove_upload(
        &self,
        caller: TenantCaller,
        upload_id: &str,
    ) -> ApiResult<pb::DeleteUploadResponse> {
        let scope = self.scope(&caller).await?;
        let upload = db::uploads::find(&self.ctx.db, &scope.tenant_id, upload_id)
            .await?
            .filter(|u| {
                scope
                    .account_id
                    .as_ref()
                    .is_none_or(|account| *account == u.account_id)
            })
            .ok_or(ApiError::NotFound("upload"))?;
        let txn = self.ctx.db.begin().await?;
        db::retention::purge_upload(&txn, &upload.tenant_id, &upload.id, &upload.object_key)
            .await?;
        txn.commit().await?;
        self.ctx.metrics.removed("uploads", 1);
        if let Err(e) = crate::retention::remove_objects(
            &self.ctx.db,
            &self.ctx.storage,
            &self.ctx.metrics,
            std::slice::from_ref(&upload.object_key),
        )
        .await
        {
            tracing::warn!(upload_id, error = %e, "object of a deleted upload left for the sweeper");
        }
        Ok(pb::DeleteUploadResponse {
            upload_id: upload.id,
        })
    }

    async fn logs(
        &self,
        caller: TenantCaller,
        req: pb::ListJobLogsRequest,
    ) -> ApiResult<pb::ListJobLogsResponse> {
        let limit = page_size(req.page_size, 100, 1000)?;
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, &req.job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let mut after: i64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| ApiError::field("page_token", "not a token from a previous page"))?
        };
        let mut entries = Vec::new();
        // Logs are events among others: read the log in batches until the page is full.
        loop {
            let batch = db::events::after(&self.ctx.db, &req.job_id, after, 500).await?;
            let Some(last) = batch.last() else { break };
            after = i64::try_from(last.sequence).unwrap_or(i64::MAX);
            for event in batch {
                if let Some(pb::job_event::Event::Log(line)) = event.event {
                    entries.push(pb::LogEntry {
                        sequence: event.sequence,
                        time: event.time,
                        line: Some(line),
                    });
                    if entries.len() as u64 == limit {
                        let token = entries
                            .last()
                            .map(|e| e.sequence.to_string())
                            .unwrap_or_default();
                        return Ok(pb::ListJobLogsResponse {
                            entries,
                            next_page_token: token,
                        });
                    }
                }
            }
        }
        Ok(pb::ListJobLogsResponse {
            entries,
            next_page_token: String::new(),
        })
    }
}

fn encode_token(created_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_token(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::field("page_token", "not a token from a previous page");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (created, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((created.parse().map_err(|_| bad())?, id.to_string()))
}

#[tonic::async_trait]
impl JobService for Jobs {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let trace = request.trace();
        let submission = Submission::try_from(request.into_inner())?;
        let submitted = self.submitter.submit(caller, submission, trace).await?;
        Ok(Response::new(self.show(submitted).await?))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        Ok(Response::new(
            self.load(&scope, &request.get_ref().job_id).await?,
        ))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.list(caller, request.into_inner()).await?,
        ))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.cancel(caller, &request.get_ref().job_id).await?,
        ))
    }

    type WatchJobStream = watch::JobEventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let req = request.into_inner();
        db::jobs::find(&self.ctx.db, &scope, &req.job_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("job"))?;
        let after = i64::try_from(req.after_sequence)
            .map_err(|_| ApiError::field("after_sequence", "too large"))?;
        Ok(Response::new(watch::job_events(
            self.ctx.clone(),
            req.job_id,
            after,
        )))
    }

    type WatchEventsStream = watch::JobEventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let cursor = db::events::Cursor::parse(&request.get_ref().after_cursor)
            .ok_or_else(|| ApiError::field("after_cursor", "not a cursor from an earlier event"))?;
        // "From now on" is fixed before answering, so nothing the caller does next is missed.
        let cursor = match cursor {
            Some(c) => c,
            None => db::events::head(&self.ctx.db)
                .await
                .map_err(ApiError::from)?,
        };
        Ok(Response::new(watch::all_events(
            self.ctx.clone(),
            scope,
            cursor,
        )))
    }

    async fn list_job_logs(
        &self,
        request: Request<pb::ListJobLogsRequest>,
    ) -> Result<Response<pb::ListJobLogsResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.logs(caller, request.into_inner()).await?,
        ))
    }

    async fn upload_source(
        &self,
        request: Request<Streaming<pb::UploadSourceRequest>>,
    ) -> Result<Response<pb::Upload>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            upload::receive(&self.ctx, caller, request.into_inner()).await?,
        ))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        request.caller::<TenantCaller>()?;
        Ok(Response::new(pb::ListModelsResponse {
            models: self.ctx.processors.models().await,
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let range = request.into_inner().range.unwrap_or_default();
        let stats = db::stats::compute(
            &self.ctx.db,
            &scope,
            range.start.as_ref().map(from_timestamp),
            range.end.as_ref().map(from_timestamp),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(stats))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.delete(caller, &request.get_ref().job_id).await?,
        ))
    }

    async fn delete_upload(
        &self,
        request: Request<pb::DeleteUploadRequest>,
    ) -> Result<Response<pb::DeleteUploadResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.remove_upload(caller, &request.get_ref().upload_id)
                .await?,
        ))
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let trace = request.trace();
        let batch = BatchRequest::try_from(request.into_inner())?;
        let submitted = self.submitter.batch(caller, batch, trace).await?;
        let mut entries = Vec::with_capacity(submitted.entries.len());
        for entry in submitted.entries {
            let result = match entry {
                Ok((job, tasks)) => {
                    pb::batch_entry::Result::Job(self.render_with(job, &tasks).await?)
                }
                Err(refused) => pb::batch_entry::Result::Failure(refused.failure()),
            };
            entries.push(pb::BatchEntry {
                result: Some(result),
            });
        }
        Ok(Response::new(pb::SubmitBatchResponse {
            batch_id: submitted.batch_id,
            entries,
        }))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            super::report::report(&self.ctx, caller, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_token(1_700_000_000_000, "0190-abc");
        assert_eq!(
            decode_token(&t).expect("valid"),
            (1_700_000_000_000, "0190-abc".to_string())
        );
        assert!(decode_token("%%%").is_err());
        assert!(
            decode_token(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("nocolon"))
                .is_err()
        );
    }
}
