//! `/v1/jobs`: submit, read, list, cancel and page through logs.

use atelier_proto::v1 as pb;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::call::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::model::enums::{JobKind, JobState};
use crate::model::job::{Job, JobList, SubmitJob};
use crate::model::other::LogPage;
use crate::model::time;
use crate::state::AppState;

/// Submit a job: validated, charged and queued in one step.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "submitJob",
    tag = "jobs",
    request_body = SubmitJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and request within 24 h returns the original job"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The queued job (or the original one for a repeated idempotency key)", body = Job,
         links(
             ("GetJob" = (operation_id = "getJob", parameters(("id" = "$response.body#/id")))),
             ("CancelJob" = (operation_id = "cancelJob", parameters(("id" = "$response.body#/id")))),
             ("ListJobLogs" = (operation_id = "listJobLogs", parameters(("id" = "$response.body#/id")))),
         )),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SubmitJob>,
) -> ApiResult<Json<Job>> {
    let request = body.into_pb(caller.idempotency_key.clone())?;
    let job = state
        .jobs
        .clone()
        .submit_job(caller.request(request))
        .await?
        .into_inner();
    Ok(Json(Job::try_from(&job)?))
}

/// Read a job with its tasks and outputs.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "getJob",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Job>> {
    let job = state
        .jobs
        .clone()
        .get_job(caller.request(pb::GetJobRequest { job_id: id }))
        .await?
        .into_inner();
    Ok(Json(Job::try_from(&job)?))
}

/// Filters and paging of `GET /v1/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1..=100; default 20.
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    /// An account's external id (tenant-wide keys only).
    pub account: Option<String>,
    /// `key=value`.
    pub label: Option<String>,
    /// Created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_gte: Option<String>,
    /// Created before this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_lt: Option<String>,
}

impl ListQuery {
    /// The gRPC request.
    pub fn into_pb(self) -> Result<pb::ListJobsRequest, ApiError> {
        let start = self
            .created_gte
            .as_deref()
            .map(|t| time::parse("created_gte", t))
            .transpose()?;
        let end = self
            .created_lt
            .as_deref()
            .map(|t| time::parse("created_lt", t))
            .transpose()?;
        Ok(pb::ListJobsRequest {
            page_size: self.page_size.unwrap_or(0),
            page_token: self.page_token.unwrap_or_default(),
            state: self.state.map_or(0, JobState::number),
            kind: self.kind.map_or(0, JobKind::number),
            account: self.account.unwrap_or_default(),
            label: self.label.unwrap_or_default(),
            created: (start.is_some() || end.is_some()).then_some(pb::TimeRange { start, end }),
        })
    }
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    params(
        ListQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<JobList>> {
    let request = query.into_pb()?;
    let page = state
        .jobs
        .clone()
        .list_jobs(caller.request(request))
        .await?
        .into_inner();
    Ok(Json(JobList::try_from(&page)?))
}

/// Cancel every task not yet finished (refunded); a finished job is returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancelJob",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The job after cancelling", body = Job),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Job>> {
    let job = state
        .jobs
        .clone()
        .cancel_job(caller.request(pb::CancelJobRequest { job_id: id }))
        .await?
        .into_inner();
    Ok(Json(Job::try_from(&job)?))
}

/// What deleting a job removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedJob {
    /// The deleted job's id; it answers 404 from now on.
    pub id: String,
    /// Outputs and thumbnails removed from storage.
    pub objects_deleted: u32,
    /// Objects kept because another job (through the content cache) still uses them.
    pub objects_kept: u32,
}

/// Delete a finished job: its outputs, thumbnails and events (the quota ledger keeps its entries).
/// Its result links stop working; the job answers 404 afterwards. A queued or running job is
/// refused with 400 (cancel it first).
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    operation_id = "deleteJob",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The job is deleted", body = DeletedJob),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<DeletedJob>> {
    let deleted = state
        .jobs
        .clone()
        .delete_job(caller.request(pb::DeleteJobRequest { job_id: id }))
        .await?
        .into_inner();
    Ok(Json(DeletedJob {
        id: deleted.job_id,
        objects_deleted: deleted.objects_deleted,
        objects_kept: deleted.objects_kept,
    }))
}

/// Paging of `GET /v1/jobs/{id}/logs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// Page through a job's log lines, oldest first.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/logs",
    operation_id = "listJobLogs",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        LogsQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "A page of log lines", body = LogPage),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    QueryParams(query): QueryParams<LogsQuery>,
) -> ApiResult<Json<LogPage>> {
    let page = state
        .jobs
        .clone()
        .list_job_logs(caller.request(pb::ListJobLogsRequest {
            job_id: id,
            page_size: query.page_size.unwrap_or(0),
            page_token: query.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(LogPage::from(&page)))
}
