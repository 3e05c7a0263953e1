//! Seed 000: the Django + Celery image-edit API (`/submit/`, `/result/`, `/batch_submit/`,
//! `/batch_result/`, `/status/`).
//!
//! Requests and answers keep that API's field names. `/submit/` makes an Atelier `edit` job of one
//! source (`image`) with `prompt`, of family `image_editor`; `/batch_submit/` makes one such job per
//! entry in one SubmitBatch call and labels each with `batch_id`, so `/batch_result/` finds them
//! again without any state in the gateway. `/result/` answers for any job of the caller (its first
//! output is `result_image`).
//!
//! Batches: the jobs of one `/batch_submit/` (1..=100 entries) hold ONE unit of the account's
//! active-jobs limit, so a batch of 100 is accepted whenever one unit is free. Entries are charged in
//! order; an entry the balance cannot pay is answered `failed` with 1002 (Atelier 2002) while the
//! others are queued; when no entry can be paid the call fails. The batch's `callback_url` gets one
//! signed delivery once every task is done, in the `/batch_result/` shape (`result_image` as a link:
//! 100 inlined images would make a body of hundreds of megabytes). An entry's own `callback_url`,
//! like `/submit/`'s, gets the `/result/` shape with `result_image` in base64, as the seed sent it
//! (the orchestrator builds both, see its `callbacks` module).
//!
//! `/submit/` and `/result/` take JSON, urlencoded forms and multipart forms, as the Django views
//! did; in a multipart `/submit/` the `image` may be the file itself (it is stored as an upload).
//!
//! `result_image` is the edited image inlined as base64, as the old system stored and answered it
//! (its worker downloaded the result and kept `result_image` as base64 text). A client that prefers a
//! link sends `"result_format": "url"` with `/result/` or `/batch_result/` and gets the output's
//! signed link instead. Answers echo what the task was made of: `prompt`, `image_url` (the `image` it
//! was given, as the old record named it) and `callback_url`.
//!
//! Choices where the document is silent:
//! - `processing_time` is seconds from the first task's start to the job's end.
//! - Errors answer `{"code": <its code>, "message": "..."}` with the HTTP status of the Atelier error.
//!
//! States: Atelier `queued` and `running` → `processing`; `succeeded` and `partially_succeeded` →
//! `success`; `failed` and `cancelled` → `failed`.
//!
//! Codes are this API's own (1002-1006 for the API, 3001-3017 for images); the table, shared with
//! the orchestrator's callbacks, is [`atelier_codes::family::image_editor`]:
//!
//! | Atelier | here | why |
//! | --- | --- | --- |
//! | 1001, 1002, 2001, 2002, 2003 | 1002 | the only "not allowed" code it has (权限不足) |
//! | 1003, 1005 | 1003 | request invalid |
//! | 1004 | 1004 | task does not exist |
//! | 1006, 1007, 1008, 1009, 3009 | 1006 | internal error (the old system retried those) |
//! | 3001, 3006, 3007, 3010 | 3001 | model call failed |
//! | 3002, 3005 | 3002 | image download failed |
//! | 3003, 3004, 3008, 3017 | same | same meaning |

use atelier_codes::family::image_editor::{self, code_for};
use atelier_codes::family::Family;
use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{CompatError, ErrorShape};
use super::form_or_json;
use super::{list_all, output_bytes, output_urls};
use crate::call::Caller;
use crate::error::ApiError;
use crate::model::time;
use crate::routes::meta::orchestrator_health;
use crate::state::AppState;

/// Label marking jobs made through this family.
const FAMILY_LABEL: (&str, &str) = ("compat", "image_editor");
/// Label carrying the batch of `/batch_submit/`.
const BATCH_LABEL: &str = "batch_id";
/// Most entries in one batch, as an Atelier job's sources.
const MAX_BATCH: usize = 100;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        // Multipart bodies may carry the image itself; each file is capped as an upload.
        .route("/submit/", post(submit).layer(DefaultBodyLimit::disable()))
        .route("/result/", post(result).layer(DefaultBodyLimit::disable()))
        .route("/batch_submit/", post(batch_submit))
        .route("/batch_result/", post(batch_result))
        .route("/status/", get(status))
}

/// An error of this API, answered with an [`EditorErrorBody`].
pub type EditorError = CompatError<EditorErrorBody>;

// `JsonBody`, `QueryParams` and `PathParam` whose rejections answer as a `EditorError`.
crate::extract::extractors!(EditorError);

/// An error of this API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorError)]
pub struct EditorErrorBody {
    pub code: u32,
    pub message: String,
}

impl ErrorShape for EditorErrorBody {
    fn from_api(err: ApiError) -> EditorError {
        CompatError::new(
            err.status,
            Self {
                code: code_for(err.code),
                message: err.message,
            },
        )
    }
}

/// A task's state in this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EditorStatus)]
pub enum EditorStatus {
    Processing,
    Success,
    Failed,
}

fn status_of(job: &pb::Job) -> EditorStatus {
    match image_editor::status_of(job) {
        image_editor::Status::Processing => EditorStatus::Processing,
        image_editor::Status::Success => EditorStatus::Success,
        image_editor::Status::Failed => EditorStatus::Failed,
    }
}

/// `POST /submit/`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = EditorSubmit)]
pub struct SubmitRequest {
    /// What to change in the image.
    pub prompt: String,
    /// The image's URL.
    pub image: String,
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// The answer of `/submit/`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorSubmitted)]
pub struct SubmitResponse {
    pub task_id: String,
    pub status: EditorStatus,
    /// Seconds until the result is expected.
    pub estimated_time: u32,
}

/// The Atelier job of one edit: its own callback only (a batch's callback is the batch's, sent once
/// when the whole batch is done).
fn edit_job(item: &SubmitRequest, batch: Option<&str>) -> Result<pb::SubmitJobRequest, ApiError> {
    if item.prompt.trim().is_empty() {
        return Err(ApiError::field("prompt", "must not be empty"));
    }
    if item.image.trim().is_empty() {
        return Err(ApiError::field("image", "must be the image's URL"));
    }
    let mut labels =
        std::collections::HashMap::from([(FAMILY_LABEL.0.to_string(), FAMILY_LABEL.1.to_string())]);
    if let Some(batch) = batch {
        labels.insert(BATCH_LABEL.to_string(), batch.to_string());
    }
    Ok(pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Edit(pb::EditParams {
                prompt: item.prompt.clone(),
                ..Default::default()
            })),
        }),
        sources: vec![pb::Source {
            // A multipart form's image file arrives as an upload.
            source: Some(match item.image.trim().strip_prefix("upload:") {
                Some(id) => pb::source::Source::UploadId(id.to_string()),
                None => pb::source::Source::Url(item.image.trim().to_string()),
            }),
        }],
        callback_url: item.callback_url.clone().unwrap_or_default(),
        labels,
        family: Family::ImageEditor.as_str().to_string(),
        ..Default::default()
    })
}

fn submitted(job: &pb::Job) -> SubmitResponse {
    SubmitResponse {
        task_id: job.id.clone(),
        status: status_of(job),
        estimated_time: job.estimated_seconds,
    }
}

/// Submit one image edit.
#[utoipa::path(
    post,
    path = "/submit/",
    operation_id = "editorSubmit",
    tag = "compat-image-editor",
    request_body(content(
        (SubmitRequest = "application/json"),
        (SubmitRequest = "application/x-www-form-urlencoded"),
        (SubmitRequest = "multipart/form-data"),
    )),
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "Queued", body = SubmitResponse),
        (status = "default", description = "An error", body = EditorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Json<SubmitResponse>, EditorError> {
    let caller = caller?;
    let body: SubmitRequest = form_or_json(&state, &caller, request).await?;
    let request = edit_job(&body, None)?;
    let job = state
        .jobs
        .clone()
        .submit_job(caller.request(request))
        .await?
        .into_inner();
    Ok(Json(submitted(&job)))
}

/// How `result_image` is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EditorResultFormat)]
pub enum ResultFormat {
    /// The image's bytes, base64 (standard alphabet, padded), as the old system answered.
    #[default]
    Base64,
    /// The output's signed link.
    Url,
}

/// `POST /result/`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = EditorResultQuery)]
pub struct ResultRequest {
    pub task_id: String,
    /// `base64` (the default) or `url`.
    #[serde(default)]
    pub result_format: ResultFormat,
}

/// A task as this API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorResult)]
pub struct TaskResult {
    pub task_id: String,
    pub status: EditorStatus,
    /// What to change, as submitted (null for jobs that were not edits).
    pub prompt: Option<String>,
    /// The source image, as submitted (`upload:<id>` for an uploaded file).
    pub image_url: String,
    pub callback_url: Option<String>,
    /// Once `success`: the edited image, base64 (or its link with `result_format: url`).
    pub result_image: Option<String>,
    /// Once `failed`: this API's code.
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    /// Seconds of processing, once finished.
    pub processing_time: Option<f64>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

fn task_result(job: &pb::Job) -> TaskResult {
    let status = status_of(job);
    let (error_code, error_message) = image_editor::error_of(job);
    TaskResult {
        task_id: job.id.clone(),
        status,
        prompt: image_editor::prompt_of(job),
        image_url: image_editor::image_url_of(job),
        callback_url: image_editor::callback_url_of(job),
        result_image: (status == EditorStatus::Success)
            .then(|| output_urls(job).into_iter().next())
            .flatten(),
        error_code,
        error_message,
        processing_time: image_editor::processing_time(job),
        created_at: time::to_text(job.created_at.as_ref()),
        completed_at: time::to_text(job.finished_at.as_ref()),
    }
}

fn task_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.to_string())
        .map_err(|_| ApiError::field("task_id", "not a task id (a UUID)"))
}

async fn fetch(state: &AppState, caller: &Caller, id: &str) -> Result<pb::Job, ApiError> {
    let request = caller.request(pb::GetJobRequest {
        job_id: task_id(id)?,
    });
    Ok(state.jobs.clone().get_job(request).await?.into_inner())
}

/// The state and result of one task.
#[utoipa::path(
    post,
    path = "/result/",
    operation_id = "editorResult",
    tag = "compat-image-editor",
    request_body(content(
        (ResultRequest = "application/json"),
        (ResultRequest = "application/x-www-form-urlencoded"),
        (ResultRequest = "multipart/form-data"),
    )),
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "The task", body = TaskResult),
        (status = "default", description = "An error", body = EditorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn result(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Json<TaskResult>, EditorError> {
    let caller = caller?;
    let body: ResultRequest = form_or_json(&state, &caller, request).await?;
    let job = fetch(&state, &caller, &body.task_id).await?;
    Ok(Json(answer(&state, &job, body.result_format).await?))
}

/// A task's answer, with its image inlined unless a link was asked for.
async fn answer(
    state: &AppState,
    job: &pb::Job,
    format: ResultFormat,
) -> Result<TaskResult, ApiError> {
    let mut result = task_result(job);
    if format == ResultFormat::Base64 && result.result_image.is_some() {
        let output = job.tasks.iter().flat_map(|t| t.outputs.first()).next();
        if let Some(output) = output {
            let bytes = output_bytes(state, output).await?;
            result.result_image = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    Ok(result)
}

/// `POST /batch_submit/`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = EditorBatchSubmit)]
pub struct BatchSubmitRequest {
    pub tasks: Vec<SubmitRequest>,
    /// For every task without its own.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// One entry of a batch: queued, or refused with this API's code.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorBatchEntry)]
pub struct BatchEntry {
    pub task_id: Option<String>,
    pub status: EditorStatus,
    pub estimated_time: Option<u32>,
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
}

/// The answer of `/batch_submit/`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorBatchSubmitted)]
pub struct BatchSubmitResponse {
    pub batch_id: String,
    pub tasks: Vec<BatchEntry>,
    pub total_count: u32,
}

/// Submit several edits; they share a `batch_id`.
#[utoipa::path(
    post,
    path = "/batch_submit/",
    operation_id = "editorBatchSubmit",
    tag = "compat-image-editor",
    request_body = BatchSubmitRequest,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "The batch", body = BatchSubmitResponse),
        (status = "default", description = "An error", body = EditorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn batch_submit(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<BatchSubmitRequest>,
) -> Result<Json<BatchSubmitResponse>, EditorError> {
    let caller = caller?;
    if body.tasks.is_empty() || body.tasks.len() > MAX_BATCH {
        return Err(ApiError::field("tasks", format!("give 1..={MAX_BATCH} tasks")).into());
    }
    let batch_id = uuid::Uuid::new_v4().to_string();
    // Every entry is checked here first, so a malformed batch creates nothing and names the entry.
    let jobs = body
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            edit_job(t, Some(&batch_id)).map_err(|mut e| {
                for d in &mut e.details {
                    d.field = format!("tasks[{i}].{}", d.field);
                }
                e
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One call: the orchestrator charges the entries in order and counts the batch as one active
    // job; an entry the balance cannot pay comes back failed, the others are queued.
    let request = pb::SubmitBatchRequest {
        jobs,
        batch_id: batch_id.clone(),
        callback_url: body.callback_url.clone().unwrap_or_default(),
        family: Family::ImageEditor.as_str().to_string(),
    };
    let answer = state
        .jobs
        .clone()
        .submit_batch(caller.request(request))
        .await?
        .into_inner();
    let entries: Vec<BatchEntry> = answer
        .entries
        .iter()
        .map(|entry| match &entry.result {
            Some(pb::batch_entry::Result::Job(job)) => {
                let s = submitted(job);
                BatchEntry {
                    task_id: Some(s.task_id),
                    status: s.status,
                    estimated_time: Some(s.estimated_time),
                    error_code: None,
                    error_message: None,
                }
            }
            Some(pb::batch_entry::Result::Failure(f)) => BatchEntry {
                task_id: None,
                status: EditorStatus::Failed,
                estimated_time: None,
                error_code: Some(image_editor::code_for_number(f.code)),
                error_message: Some(f.message.clone()),
            },
            None => BatchEntry {
                task_id: None,
                status: EditorStatus::Failed,
                estimated_time: None,
                error_code: Some(1006),
                error_message: Some("the entry was not answered".to_string()),
            },
        })
        .collect();
    Ok(Json(BatchSubmitResponse {
        batch_id: answer.batch_id,
        total_count: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        tasks: entries,
    }))
}

/// `POST /batch_result/`: a `batch_id`, or a list of `task_ids`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = EditorBatchResultQuery)]
pub struct BatchResultRequest {
    #[serde(default)]
    pub batch_id: Option<String>,
    #[serde(default)]
    pub task_ids: Option<Vec<String>>,
    /// `base64` (the default) or `url`, for every task.
    #[serde(default)]
    pub result_format: ResultFormat,
}

/// The answer of `/batch_result/`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorBatchResult)]
pub struct BatchResultResponse {
    pub batch_id: Option<String>,
    pub total_count: u32,
    /// Tasks that reached `success` or `failed`.
    pub completed_count: u32,
    pub tasks: Vec<TaskResult>,
}

/// The state and results of a batch.
#[utoipa::path(
    post,
    path = "/batch_result/",
    operation_id = "editorBatchResult",
    tag = "compat-image-editor",
    request_body = BatchResultRequest,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "The batch's tasks", body = BatchResultResponse),
        (status = "default", description = "An error", body = EditorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn batch_result(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<BatchResultRequest>,
) -> Result<Json<BatchResultResponse>, EditorError> {
    let caller = caller?;
    let jobs = match (&body.batch_id, &body.task_ids) {
        (Some(batch), None) => {
            let batch = uuid::Uuid::parse_str(batch.trim())
                .map_err(|_| ApiError::field("batch_id", "not a batch id (a UUID)"))?;
            let filter = pb::ListJobsRequest {
                label: format!("{BATCH_LABEL}={batch}"),
                ..Default::default()
            };
            let mut jobs = list_all(&state, &caller, filter).await?;
            if jobs.is_empty() {
                return Err(ApiError::new(ErrorCode::NotFound, "no such batch").into());
            }
            // Submission order, as the batch was sent.
            jobs.reverse();
            jobs
        }
        (None, Some(ids)) if !ids.is_empty() && ids.len() <= MAX_BATCH => {
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                jobs.push(fetch(&state, &caller, id).await?);
            }
            jobs
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "give either batch_id or task_ids (1..={MAX_BATCH})"
            ))
            .into())
        }
    };
    let mut tasks = Vec::with_capacity(jobs.len());
    for job in &jobs {
        tasks.push(answer(&state, job, body.result_format).await?);
    }
    let completed = tasks
        .iter()
        .filter(|t| t.status != EditorStatus::Processing)
        .count();
    Ok(Json(BatchResultResponse {
        batch_id: body.batch_id.map(|b| b.trim().to_string()),
        total_count: u32::try_from(tasks.len()).unwrap_or(u32::MAX),
        completed_count: u32::try_from(completed).unwrap_or(u32::MAX),
        tasks,
    }))
}

/// The answer of `/status/`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EditorApiStatus)]
pub struct StatusResponse {
    /// `ok`, or `unavailable` when the orchestrator does not serve.
    pub status: String,
    pub service: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// API status; needs no key.
#[utoipa::path(
    get,
    path = "/status/",
    operation_id = "editorStatus",
    tag = "compat-image-editor",
    responses(
        (status = 200, description = "Serving", body = StatusResponse),
        (status = 503, description = "The orchestrator does not serve", body = StatusResponse),
    )
)]
pub async fn status(State(state): State<AppState>) -> (StatusCode, Json<StatusResponse>) {
    let serving = orchestrator_health(&state).await == "serving";
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (code, word) = if serving {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        code,
        Json(StatusResponse {
            status: word.to_string(),
            service: "atelier".to_string(),
            timestamp: now,
        }),
    )
}
