//! Seed 001: the Node/Express task API (`POST /api/task/create`, `GET /api/task/{taskId}`,
//! `GET /api/task/list`, `PUT /api/task/{taskId}/status`), answering `{"success": true, "data": …}`
//! in its camelCase shapes.
//!
//! Task types: `basic_clean` → Atelier `basic_clean` (`params.template`), `model_pose12` → `pose_set`
//! (`params.scene`, `params.category`, `params.productDescription`). Jobs of other kinds are not tasks of
//! this API: they read as 4004 and are left out of lists.
//!
//! States: `queued` → `pending`, `running` → `processing`, `succeeded` and `partially_succeeded` →
//! `success`, `failed` and `cancelled` → `failed` (with `errorMessage`). The `status` filter of the list
//! takes the same four words.
//!
//! Status updates (`PUT /api/task/{taskId}/status`, the document's internal interface): a worker
//! outside Atelier (the operator's own, like the replaced system's RunningHub poller) reports
//! `{status, resultUrls?, errorMessage?}` and gets `{success, message}`. It authenticates as on the
//! other routes (Atelier key or this family's JWT) and must also send the service credential (the
//! token the orchestrator shares with its processors) in `X-Api-Key`; without it, or with a wrong
//! one, 4003. The task id is the job's; the report goes to the job's one task (`ReportTask`):
//!
//! | status | the task | then |
//! | --- | --- | --- |
//! | `pending` | must still wait in the queue | unchanged |
//! | `processing` | waiting: taken by the worker, no Atelier processor runs it | `processing`; times out (refunded) at the attempt's deadline unless reported |
//! | `success` | waiting or taken by the worker; `resultUrls` 1..=12 | the results are fetched through the guarded downloader, checked and stored as outputs; `resultUrls` then lists Atelier's links |
//! | `failed` | waiting or taken by the worker | `failed` with `errorMessage` (code 3001), refunded once |
//!
//! A task an Atelier processor runs, or a finished task reported in another state, is 4001; reporting
//! the state a finished task has answers success without changing it (retries are safe). A result URL
//! that cannot be fetched or is not an image is 4001 with the reason in `detail`, and the task stays as
//! it was. Messages read `任务状态已更新：<the document's label of the state>`.
//!
//! Listing: `limit` (default 10, 1..=100) and `offset` over the caller's tasks, newest first; `total`
//! counts every match (up to the first 5,000 jobs scanned).
//!
//! Errors answer `{"success": false, "code": <its code>, "message": "<the document's words for the
//! code>", "detail": "<what exactly went wrong>"}` with the HTTP status of the Atelier error (404 for
//! an unknown user). A task that timed out reads `任务超时：…`. Codes (this API's own):
//!
//! | Atelier | here | its meaning |
//! | --- | --- | --- |
//! | 1003, 1005, 3xxx but 3009 | 4001 | 参数错误 (bad parameters; a 3xxx at submit is a bad source or kind) |
//! | 1001, 1002 | 4003 | 权限错误 (not logged in / not allowed; a status update without the service credential) |
//! | 1004 | 4004 | 资源不存在 (no such task) |
//! | 2001 | 1002 | 会员错误 (not a member); 1004 用户不存在 when the account does not exist at all |
//! | 2002, 2003 | 1003 | 配额错误 (quota; too many running tasks reads as "wait for quota") |
//! | 1006-1009, 3009 | 5000 | not in its table: a server error, kept apart from the client codes |

use atelier_codes::family::Family;
use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use atelier_codes::family::image_editor::image_url_of;

use super::error::{CompatError, ErrorShape};
use super::{first_failure, is_active, list_all, output_urls};
use crate::call::Caller;
use crate::error::ApiError;
use crate::model::time;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/task/create", routing::post(create))
        .route("/api/task/list", routing::get(list))
        .route("/api/task/{task_id}", routing::get(get))
        .route("/api/task/{task_id}/status", routing::put(update_status))
}

/// This API's code for an Atelier code.
pub fn code_for(code: ErrorCode) -> u32 {
    use ErrorCode::*;
    match code {
        Unauthenticated | PermissionDenied => 4003,
        NotFound => 4004,
        MembershipRequired => 1002,
        QuotaExhausted | TooManyActiveJobs => 1003,
        Internal | TimedOut | Cancelled | Unavailable | StorageFailed => 5000,
        InvalidArgument | IdempotencyConflict | ModelCallFailed | DownloadFailed
        | UnsupportedFormat | InvalidDimensions | SourceBlocked | ModelUnavailable
        | ContentRejected | SourceTooLarge | DecodeFailed | MattingUncertain => 4001,
    }
}

/// The document's words for each of its codes.
pub fn message_for(code: u32) -> &'static str {
    match code {
        4001 => "参数错误：缺少必要参数或参数无效",
        4003 => "权限错误：用户无权访问",
        4004 => "资源不存在：任务不存在",
        1002 => "会员错误：非会员用户",
        1003 => "配额错误：配额不足",
        1004 => "用户不存在：用户账户异常",
        _ => "服务器错误：请稍后重试",
    }
}

/// An error of this API, answered with a [`TaskApiErrorBody`].
pub type TaskApiError = CompatError<TaskApiErrorBody>;

// `JsonBody`, `QueryParams` and `PathParam` whose rejections answer as a `TaskApiError`.
crate::extract::extractors!(TaskApiError);

/// An error of this API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskApiError)]
pub struct TaskApiErrorBody {
    /// Always false.
    pub success: bool,
    pub code: u32,
    /// The document's message for the code.
    pub message: String,
    /// What exactly went wrong (Atelier's message).
    pub detail: String,
}

impl TaskApiErrorBody {
    /// The body for one of this API's codes.
    fn new(code: u32, detail: String) -> Self {
        Self {
            success: false,
            code,
            message: message_for(code).to_string(),
            detail,
        }
    }
}

impl ErrorShape for TaskApiErrorBody {
    fn from_api(err: ApiError) -> TaskApiError {
        CompatError::new(err.status, Self::new(code_for(err.code), err.message))
    }
}

impl TaskApiError {
    /// 1004 用户不存在: the account the caller acts as does not exist.
    fn unknown_user(detail: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, TaskApiErrorBody::new(1004, detail))
    }
}

/// A task type of this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    BasicClean,
    ModelPose12,
}

impl TaskType {
    fn kind(self) -> pb::JobKind {
        match self {
            Self::BasicClean => pb::JobKind::BasicClean,
            Self::ModelPose12 => pb::JobKind::PoseSet,
        }
    }

    fn of(job: &pb::Job) -> Option<Self> {
        match pb::JobKind::try_from(job.kind).ok()? {
            pb::JobKind::BasicClean => Some(Self::BasicClean),
            pb::JobKind::PoseSet => Some(Self::ModelPose12),
            _ => None,
        }
    }
}

/// A task state of this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Processing,
    Success,
    Failed,
}

impl TaskStatus {
    fn of(job: &pb::Job) -> Self {
        use pb::JobState as S;
        match S::try_from(job.state) {
            Ok(S::Running) => Self::Processing,
            Ok(S::Succeeded | S::PartiallySucceeded) => Self::Success,
            Ok(S::Failed | S::Cancelled) => Self::Failed,
            _ => Self::Pending,
        }
    }

    /// The one Atelier state to filter on, when there is exactly one.
    fn only_state(self) -> Option<pb::JobState> {
        match self {
            Self::Pending => Some(pb::JobState::Queued),
            Self::Processing => Some(pb::JobState::Running),
            Self::Success | Self::Failed => None,
        }
    }
}

/// The parameters of a task.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskParams {
    /// basic_clean: `all`, `matting`, `white_bg` or `enhanced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// model_pose12: `street`, `studio` or `indoor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// model_pose12: for example `shoes`, `dress`, `hoodie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_description: Option<String>,
}

/// `POST /api/task/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "basic_clean",
    "inputImageUrl": "https://example.com/images/product.jpg",
    "params": {"template": "all"}
}))]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskRequest {
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub input_image_url: String,
    #[serde(default)]
    pub params: Option<TaskParams>,
}

fn template(word: &str) -> Result<pb::CleanTemplate, ApiError> {
    Ok(match word {
        "all" => pb::CleanTemplate::All,
        "matting" => pb::CleanTemplate::Matting,
        "white_bg" => pb::CleanTemplate::WhiteBg,
        "enhanced" => pb::CleanTemplate::Enhanced,
        _ => {
            return Err(ApiError::field(
                "params.template",
                "one of all, matting, white_bg, enhanced",
            ))
        }
    })
}

fn scene(word: &str) -> Result<pb::Scene, ApiError> {
    Ok(match word {
        "street" => pb::Scene::Street,
        "studio" => pb::Scene::Studio,
        "indoor" => pb::Scene::Indoor,
        _ => {
            return Err(ApiError::field(
                "params.scene",
                "one of street, studio, indoor",
            ))
        }
    })
}

impl CreateTaskRequest {
    fn into_pb(self) -> Result<pb::SubmitJobRequest, ApiError> {
        let url = self.input_image_url.trim().to_string();
        if url.is_empty() {
            return Err(ApiError::field("inputImageUrl", "must be the image's URL"));
        }
        let p = self.params.unwrap_or_default();
        let params = match self.task_type {
            TaskType::BasicClean => pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: p
                    .template
                    .as_deref()
                    .map(template)
                    .transpose()?
                    .unwrap_or(pb::CleanTemplate::All) as i32,
                model: String::new(),
                ..Default::default()
            }),
            TaskType::ModelPose12 => pb::job_params::Params::PoseSet(pb::PoseSetParams {
                scene: p
                    .scene
                    .as_deref()
                    .map(scene)
                    .transpose()?
                    .map_or(0, |s| s as i32),
                category: p.category.unwrap_or_default(),
                description: p.product_description.unwrap_or_default(),
                model: String::new(),
            }),
        };
        Ok(pb::SubmitJobRequest {
            params: Some(pb::JobParams {
                params: Some(params),
            }),
            sources: vec![pb::Source {
                source: Some(pb::source::Source::Url(url)),
            }],
            labels: [("compat".to_string(), "task_api".to_string())].into(),
            family: Family::TaskApi.as_str().to_string(),
            ..Default::default()
        })
    }
}

/// A created task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTask {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub status: TaskStatus,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// The answer of `/api/task/create`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateTaskResponse {
    pub success: bool,
    pub data: CreatedTask,
}

/// Create a task (charged one quota unit per task at once).
#[utoipa::path(
    post,
    path = "/api/task/create",
    operation_id = "taskCreate",
    tag = "compat-task-api",
    request_body = CreateTaskRequest,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Created", body = CreateTaskResponse,
         links(("GetTask" = (operation_id = "taskGet", parameters(("task_id" = "$response.body#/data/taskId")))))),
        (status = "default", description = "An error", body = TaskApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<CreateTaskRequest>,
) -> Result<Json<CreateTaskResponse>, TaskApiError> {
    let caller = caller?;
    let task_type = body.task_type;
    let request = body.into_pb()?;
    let job = match state.jobs.clone().submit_job(caller.request(request)).await {
        Ok(job) => job.into_inner(),
        Err(status) => {
            let err = ApiError::from(status);
            // Not a member, or no such user at all: the document tells them apart (1002, 1004).
            if err.code == ErrorCode::MembershipRequired {
                let account = state
                    .accounts
                    .clone()
                    .get_account(caller.request(pb::GetAccountRequest::default()))
                    .await;
                if let Err(status) = account {
                    let lookup = ApiError::from(status);
                    if lookup.code == ErrorCode::NotFound {
                        return Err(TaskApiError::unknown_user(lookup.message));
                    }
                }
            }
            return Err(err.into());
        }
    };
    Ok(Json(CreateTaskResponse {
        success: true,
        data: CreatedTask {
            task_id: job.id.clone(),
            task_type,
            status: TaskStatus::of(&job),
            created_at: time::to_text(job.created_at.as_ref()),
        },
    }))
}

/// A task in full.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub status: TaskStatus,
    pub input_image_url: String,
    pub params: TaskParams,
    pub result_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// The answer of `/api/task/{taskId}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GetTaskResponse {
    pub success: bool,
    pub data: TaskDetail,
}

fn params_of(job: &pb::Job) -> TaskParams {
    match job.params.as_ref().and_then(|p| p.params.as_ref()) {
        Some(pb::job_params::Params::BasicClean(p)) => TaskParams {
            template: Some(
                match pb::CleanTemplate::try_from(p.template) {
                    Ok(pb::CleanTemplate::Matting) => "matting",
                    Ok(pb::CleanTemplate::WhiteBg) => "white_bg",
                    Ok(pb::CleanTemplate::Enhanced) => "enhanced",
                    _ => "all",
                }
                .to_string(),
            ),
            ..TaskParams::default()
        },
        Some(pb::job_params::Params::PoseSet(p)) => TaskParams {
            scene: match pb::Scene::try_from(p.scene) {
                Ok(pb::Scene::Street) => Some("street".to_string()),
                Ok(pb::Scene::Studio) => Some("studio".to_string()),
                Ok(pb::Scene::Indoor) => Some("indoor".to_string()),
                _ => None,
            },
            category: (!p.category.is_empty()).then(|| p.category.clone()),
            product_description: (!p.description.is_empty()).then(|| p.description.clone()),
            ..TaskParams::default()
        },
        _ => TaskParams::default(),
    }
}

fn error_message(job: &pb::Job, status: TaskStatus) -> Option<String> {
    if status != TaskStatus::Failed {
        return None;
    }
    Some(match first_failure(job) {
        // The document's timeout message, with what Atelier knows after it.
        Some(f) if f.code == ErrorCode::TimedOut.number() => format!("任务超时：{}", f.message),
        Some(f) => f.message.clone(),
        None if job.state == pb::JobState::Cancelled as i32 => "任务已取消 (cancelled)".to_string(),
        None => "任务失败 (failed)".to_string(),
    })
}

fn detail(job: &pb::Job, task_type: TaskType) -> TaskDetail {
    let status = TaskStatus::of(job);
    TaskDetail {
        id: job.id.clone(),
        task_type,
        status,
        input_image_url: image_url_of(job),
        params: params_of(job),
        result_urls: output_urls(job),
        error_message: error_message(job, status),
        created_at: time::to_text(job.created_at.as_ref()),
        updated_at: time::to_text(job.updated_at.as_ref()),
        completed_at: (!is_active(job))
            .then(|| time::to_text(job.finished_at.as_ref()))
            .flatten(),
    }
}

/// One task: its state, parameters and result URLs.
#[utoipa::path(
    get,
    path = "/api/task/{task_id}",
    operation_id = "taskGet",
    tag = "compat-task-api",
    params(
        ("task_id" = String, Path, description = "The task id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The user"),
    ),
    responses(
        (status = 200, description = "The task", body = GetTaskResponse),
        (status = "default", description = "An error", body = TaskApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(task_id): PathParam<String>,
) -> Result<Json<GetTaskResponse>, TaskApiError> {
    let caller = caller?;
    let job = state
        .jobs
        .clone()
        .get_job(caller.request(pb::GetJobRequest { job_id: task_id }))
        .await?
        .into_inner();
    let task_type =
        TaskType::of(&job).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "job not found"))?;
    Ok(Json(GetTaskResponse {
        success: true,
        data: detail(&job, task_type),
    }))
}

/// Query of `/api/task/list`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Tasks per page, 1..=100; default 10.
    pub limit: Option<u32>,
    /// Tasks to skip; default 0.
    pub offset: Option<u32>,
    pub status: Option<TaskStatus>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub task_type: Option<TaskType>,
}

/// A task in a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub status: TaskStatus,
    pub input_image_url: String,
    pub result_urls: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    pub total: u32,
    pub limit: u32,
    pub offset: u32,
}

/// The answer of `/api/task/list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListTasksResponse {
    pub success: bool,
    pub data: TaskPage,
}

/// The caller's tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/task/list",
    operation_id = "taskList",
    tag = "compat-task-api",
    params(
        ListQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The user"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = ListTasksResponse),
        (status = "default", description = "An error", body = TaskApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ListTasksResponse>, TaskApiError> {
    let caller = caller?;
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "1..=100").into());
    }
    let offset = query.offset.unwrap_or(0);
    let filter = pb::ListJobsRequest {
        kind: query.task_type.map_or(0, |t| t.kind() as i32),
        state: query
            .status
            .and_then(TaskStatus::only_state)
            .map_or(0, |s| s as i32),
        ..Default::default()
    };
    let jobs = list_all(&state, &caller, filter).await?;
    let matching: Vec<(TaskType, &pb::Job)> = jobs
        .iter()
        .filter_map(|j| Some((TaskType::of(j)?, j)))
        .filter(|(_, j)| query.status.is_none_or(|s| TaskStatus::of(j) == s))
        .collect();
    let tasks = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|(task_type, job)| {
            let d = detail(job, *task_type);
            TaskSummary {
                id: d.id,
                task_type: d.task_type,
                status: d.status,
                input_image_url: d.input_image_url,
                result_urls: d.result_urls,
                created_at: d.created_at,
                updated_at: d.updated_at,
                completed_at: d.completed_at,
            }
        })
        .collect();
    Ok(Json(ListTasksResponse {
        success: true,
        data: TaskPage {
            tasks,
            total: u32::try_from(matching.len()).unwrap_or(u32::MAX),
            limit,
            offset,
        },
    }))
}

/// The header carrying the service credential of `PUT /api/task/{taskId}/status`.
pub const SERVICE_KEY_HEADER: &str = "x-api-key";

/// `PUT /api/task/{taskId}/status`: what a worker outside Atelier reports.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "status": "success",
    "resultUrls": ["https://worker.example.com/out/1.png", "https://worker.example.com/out/2.png"]
}))]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatusRequest {
    pub status: TaskStatus,
    /// With `success`: 1..=12 URLs of the result images; Atelier fetches and keeps them.
    #[serde(default)]
    pub result_urls: Option<Vec<String>>,
    /// With `failed`: why.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// The answer of `PUT /api/task/{taskId}/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateStatusResponse {
    pub success: bool,
    pub message: String,
}

impl TaskStatus {
    fn reported(self) -> pb::ReportedState {
        match self {
            Self::Pending => pb::ReportedState::Queued,
            Self::Processing => pb::ReportedState::Processing,
            Self::Success => pb::ReportedState::Succeeded,
            Self::Failed => pb::ReportedState::Failed,
        }
    }

    /// The document's words for the state (its front end's status labels).
    fn words(self) -> &'static str {
        match self {
            Self::Pending => "等待处理",
            Self::Processing => "处理中",
            Self::Success => "处理成功",
            Self::Failed => "处理失败",
        }
    }
}

/// Report a task's state and results (internal: for the operator's own workers).
///
/// A worker outside Atelier takes a pending task (`processing`), then reports `success` with the
/// URLs of its results (fetched and kept by Atelier, which then serves its own links) or `failed`
/// (the task is refunded). Needs the caller's usual credentials and the service credential in
/// `X-Api-Key`.
#[utoipa::path(
    put,
    path = "/api/task/{task_id}/status",
    operation_id = "taskUpdateStatus",
    tag = "compat-task-api",
    request_body = UpdateStatusRequest,
    params(
        ("task_id" = String, Path, description = "The task id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The user"),
        ("X-Api-Key" = String, Header, description = "The service credential"),
    ),
    responses(
        (status = 200, description = "Updated", body = UpdateStatusResponse),
        (status = "default", description = "An error", body = TaskApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_status(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: axum::http::HeaderMap,
    PathParam(task_id): PathParam<String>,
    JsonBody(body): JsonBody<UpdateStatusRequest>,
) -> Result<Json<UpdateStatusResponse>, TaskApiError> {
    let caller = caller?;
    let service_key = headers
        .get(SERVICE_KEY_HEADER)
        .filter(|v| !v.as_bytes().is_empty())
        .and_then(|v| tonic::metadata::AsciiMetadataValue::try_from(v.as_bytes()).ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PermissionDenied,
                "an internal route: send the service credential in X-Api-Key",
            )
        })?;
    let job = state
        .jobs
        .clone()
        .get_job(caller.request(pb::GetJobRequest { job_id: task_id }))
        .await?
        .into_inner();
    let only_task = match (TaskType::of(&job), job.tasks.as_slice()) {
        (Some(_), [task]) => task.id.clone(),
        _ => return Err(ApiError::new(ErrorCode::NotFound, "job not found").into()),
    };
    let status = body.status;
    let mut request = caller.request(pb::ReportTaskRequest {
        task_id: only_task,
        state: status.reported() as i32,
        result_urls: body.result_urls.unwrap_or_default(),
        error_message: body.error_message.unwrap_or_default(),
    });
    request
        .metadata_mut()
        .insert(SERVICE_KEY_HEADER, service_key);
    state.jobs.clone().report_task(request).await?;
    Ok(Json(UpdateStatusResponse {
        success: true,
        message: format!("任务状态已更新：{}", status.words()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_this_api_meanings() {
        assert_eq!(code_for(ErrorCode::InvalidArgument), 4001);
        assert_eq!(code_for(ErrorCode::Unauthenticated), 4003);
        assert_eq!(code_for(ErrorCode::NotFound), 4004);
        assert_eq!(code_for(ErrorCode::MembershipRequired), 1002);
        assert_eq!(code_for(ErrorCode::QuotaExhausted), 1003);
        assert_eq!(code_for(ErrorCode::Internal), 5000);
    }

    #[test]
    fn the_document_example_reads() {
        let body: CreateTaskRequest = serde_json::from_value(serde_json::json!({
            "type": "model_pose12",
            "inputImageUrl": "https://example.com/images/garment.jpg",
            "params": {"scene": "studio", "category": "dress", "productDescription": "优雅连衣裙"}
        }))
        .expect("body");
        let request = body.into_pb().expect("valid");
        match request.params.and_then(|p| p.params) {
            Some(pb::job_params::Params::PoseSet(p)) => {
                assert_eq!(p.scene, pb::Scene::Studio as i32);
                assert_eq!(p.description, "优雅连衣裙");
            }
            other => panic!("not a pose set: {other:?}"),
        }
    }
}
