//! Seed 002: the FastAPI + VolcEngine image generator (`/api/v1/generate`, `/api/v1/task/{id}`,
//! `/api/v1/tasks`, `/api/v1/history`, their deletes, `/api/v1/images/{id}`, `/api/v1/models`,
//! `/api/v1/system/info`, `/api/v1/health` and the WebSocket `/api/v1/generate/stream`).
//!
//! `POST /api/v1/generate` takes the document's fields (`prompt`, `negative_prompt`, `model`, `width`,
//! `height`, `num_images`, `steps`, `scale`, `seed`, or a `size` preset) and makes an Atelier
//! `generate` job; its answers keep the document's shapes and state names, including `retrying`
//! while the task waits to retry. Image links are this family's own `/api/v1/images/{image_id}`
//! (and `/thumbnail`), which answer with a redirect to the stored image's link.
//!
//! Rate limiting is the document's: past `--generator-requests-per-minute` requests a minute for one
//! key, 429 `{"error": "rate_limit_exceeded", "message", "retry_after"}` with a `Retry-After` header;
//! and more active jobs than the account may hold (2003) answer the same way, as the document's
//! "超出并发任务限制". `/api/v1/health` needs no key and is never limited.
//!
//! Choices where the document is silent:
//! - Errors are `{"error": <kind>, "message", "details"}`: `validation_error` (400, 1003),
//!   `not_found` (404), `rate_limit_exceeded` (429), otherwise the Atelier reason in lower case
//!   with its SPEC §5 status; `code` carries the Atelier number.
//! - `GET /api/v1/tasks` takes `status`, `limit` (1..=100, default 20) and `offset`; the history is
//!   the finished tasks, newest first, with the same paging.
//! - `DELETE /api/v1/task/{id}` cancels a task still running (answering `status: "cancelled"`) and
//!   deletes a finished one with its images (`status: "deleted"`); `DELETE /api/v1/history/{id}`
//!   deletes finished tasks only. A deleted task answers 404 afterwards.
//! - The stream: after the socket opens the client sends one JSON text message, either a generate
//!   request (the task is created as by `POST /api/v1/generate`) or `{"task_id": "…"}` to follow an
//!   existing task. The server answers `{"type": "task", "task": …}` for every change of the task
//!   (the `GET /api/v1/task/{id}` shape), `{"type": "done", "task": …}` once it finished, then closes;
//!   a refusal is `{"type": "error", "error", "message"}` and a close.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier_codes::family::Family;
use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{CompatError, ErrorShape};
use super::list_all;
use crate::call::Caller;
use crate::error::ApiError;
use crate::model::time;
use crate::routes::meta::orchestrator_health;
use crate::state::AppState;

/// Label marking jobs made through this family.
const FAMILY_LABEL: (&str, &str) = ("compat", "generator");
/// `size` presets: name → width × height.
pub const SIZE_PRESETS: [(&str, u32, u32); 7] = [
    ("512x512", 512, 512),
    ("768x768", 768, 768),
    ("1024x1024", 1024, 1024),
    ("1024x768", 1024, 768),
    ("768x1024", 768, 1024),
    ("1280x720", 1280, 720),
    ("720x1280", 720, 1280),
];
/// Seconds a client is told to wait when it holds too many active tasks.
const BUSY_RETRY_AFTER: u64 = 60;

/// The routes, with `per_minute` requests a minute per key (0: no limit).
pub fn router(per_minute: u32) -> Router<AppState> {
    let limiter = Arc::new(RateLimiter::new(per_minute));
    let limited = Router::new()
        .route("/api/v1/generate", post(generate))
        .route("/api/v1/generate/stream", get(stream))
        .route("/api/v1/task/{task_id}", get(task).delete(delete_task))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/history", get(history))
        .route("/api/v1/history/{task_id}", delete(delete_history))
        .route("/api/v1/images/{image_id}", get(image))
        .route("/api/v1/images/{image_id}/thumbnail", get(thumbnail))
        .route("/api/v1/models", get(models))
        .route("/api/v1/system/info", get(info))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&limiter),
            rate_limit,
        ))
        .layer(Extension(limiter));
    // Health is never limited.
    limited.route("/api/v1/health", get(health))
}

/// Every limited route passes here first: one token of the caller's key, or 429.
async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match limiter.admit(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// An error of this family, answered with a [`GeneratorErrorBody`].
pub type GeneratorError = CompatError<GeneratorErrorBody>;

// `JsonBody`, `QueryParams` and `PathParam` whose rejections answer as a `GeneratorError`.
crate::extract::extractors!(GeneratorError);

/// An error of this family.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorError)]
pub struct GeneratorErrorBody {
    /// `validation_error`, `not_found`, `rate_limit_exceeded`, or the Atelier reason in lower case.
    pub error: String,
    pub message: String,
    /// The SPEC §5 code.
    pub code: u32,
    /// For `validation_error`: each field and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<HashMap<String, String>>,
    /// For `rate_limit_exceeded`: seconds to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl GeneratorError {
    fn rate_limited(message: &str, retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            GeneratorErrorBody {
                error: "rate_limit_exceeded".into(),
                message: message.into(),
                code: ErrorCode::TooManyActiveJobs.number(),
                details: None,
                retry_after: Some(retry_after),
            },
        )
    }

    fn not_found() -> Self {
        Self::from(ApiError::new(ErrorCode::NotFound, "任务不存在"))
    }
}

impl ErrorShape for GeneratorErrorBody {
    fn from_api(err: ApiError) -> GeneratorError {
        match err.code {
            ErrorCode::TooManyActiveJobs => {
                GeneratorError::rate_limited("超出并发任务限制", BUSY_RETRY_AFTER)
            }
            ErrorCode::InvalidArgument | ErrorCode::IdempotencyConflict => CompatError::new(
                StatusCode::BAD_REQUEST,
                Self {
                    error: "validation_error".into(),
                    message: err.message,
                    code: err.code.number(),
                    details: Some(
                        err.details
                            .into_iter()
                            .map(|d| (d.field, d.description))
                            .collect(),
                    ),
                    retry_after: None,
                },
            ),
            code => CompatError::new(
                err.status,
                Self {
                    error: if code == ErrorCode::NotFound {
                        "not_found".into()
                    } else {
                        code.reason().to_ascii_lowercase()
                    },
                    message: err.message,
                    code: code.number(),
                    details: None,
                    retry_after: None,
                },
            ),
        }
    }

    /// `Retry-After` beside a `retry_after`.
    fn headers(&self, headers: &mut HeaderMap) {
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
}

/// Requests a minute per key: a token bucket per `Authorization` value (hashed; no key is kept).
pub struct RateLimiter {
    per_minute: u32,
    hasher: std::collections::hash_map::RandomState,
    buckets: Mutex<HashMap<u64, (f64, Instant)>>,
}

impl RateLimiter {
    /// Most buckets kept; past it, full ones are forgotten.
    const MAX_BUCKETS: usize = 100_000;

    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `key`, or says how many seconds until one is free.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let id = self.hasher.hash_one(key);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= Self::MAX_BUCKETS {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < capacity
            });
        }
        let (tokens, at) = buckets.entry(id).or_insert((capacity, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }

    fn admit(&self, headers: &HeaderMap) -> Result<(), GeneratorError> {
        let key = headers
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        self.check(key, Instant::now())
            .map_err(|wait| GeneratorError::rate_limited("请求过于频繁，请稍后再试", wait))
    }
}

/// `POST /api/v1/generate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = GeneratorRequest)]
pub struct GenerateRequest {
    /// What to draw; must not be empty.
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// A model `GET /api/v1/models` lists; empty for the default.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// A preset instead of width and height: 512x512, 768x768, 1024x1024, 1024x768, 768x1024,
    /// 1280x720, 720x1280.
    #[serde(default)]
    pub size: Option<String>,
    /// 1..=4 (default 1).
    #[serde(default)]
    pub num_images: Option<u32>,
    #[serde(default)]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[serde(default)]
    pub scale: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
}

/// The answer of `POST /api/v1/generate`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorCreated)]
pub struct Created {
    pub task_id: String,
    pub status: Status,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Seconds until the images are expected.
    pub estimated_time: u32,
}

/// A task's state in this family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = GeneratorStatus)]
pub enum Status {
    Pending,
    Processing,
    Retrying,
    Completed,
    Failed,
}

impl Status {
    fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One generated image.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorImage)]
pub struct ImageView {
    pub image_id: String,
    /// `/api/v1/images/{image_id}`.
    pub url: String,
    /// `/api/v1/images/{image_id}/thumbnail`.
    pub thumbnail_url: String,
    pub width: u32,
    pub height: u32,
    pub file_size: u64,
}

/// A task as this family shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorTask)]
pub struct TaskView {
    pub task_id: String,
    pub status: Status,
    /// 0..=100.
    pub progress: u32,
    pub prompt: String,
    pub negative_prompt: String,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub num_images: u32,
    pub steps: u32,
    pub scale: f32,
    pub seed: Option<i64>,
    /// Once `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageView>>,
    /// Once `failed`, or while `retrying`: the last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Attempts after the first (while `retrying`, counting the one it waits for).
    pub retry_count: u32,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

fn status_of(job: &pb::Job) -> Status {
    use pb::TaskState as T;
    let Some(task) = job.tasks.first() else {
        return match pb::JobState::try_from(job.state) {
            Ok(pb::JobState::Succeeded | pb::JobState::PartiallySucceeded) => Status::Completed,
            Ok(pb::JobState::Failed | pb::JobState::Cancelled) => Status::Failed,
            Ok(pb::JobState::Running) => Status::Processing,
            _ => Status::Pending,
        };
    };
    match T::try_from(task.state) {
        Ok(T::Running) => Status::Processing,
        Ok(T::RetryWait) => Status::Retrying,
        Ok(T::Succeeded) => Status::Completed,
        Ok(T::Failed | T::Cancelled) => Status::Failed,
        _ => Status::Pending,
    }
}

/// `img_<job>_<task>_<output>`: enough to find the output again without any state.
fn image_id(job: &pb::Job, task: u32, output: usize) -> String {
    let job =
        uuid::Uuid::parse_str(&job.id).map_or_else(|_| job.id.clone(), |u| u.simple().to_string());
    format!("img_{job}_{task}_{output}")
}

fn parse_image_id(id: &str) -> Option<(String, u32, usize)> {
    let mut parts = id.strip_prefix("img_")?.split('_');
    let job = uuid::Uuid::parse_str(parts.next()?).ok()?;
    let task = parts.next()?.parse().ok()?;
    let output = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then(|| (job.to_string(), task, output))
}

fn task_view(job: &pb::Job) -> TaskView {
    let status = status_of(job);
    let params = match job.params.as_ref().and_then(|p| p.params.as_ref()) {
        Some(pb::job_params::Params::Generate(g)) => g.clone(),
        _ => pb::GenerateParams::default(),
    };
    let task = job.tasks.first();
    let images = (status == Status::Completed).then(|| {
        job.tasks
            .iter()
            .flat_map(|t| {
                t.outputs
                    .iter()
                    .enumerate()
                    .map(move |(i, o)| (t.index, i, o))
            })
            .map(|(t, i, o)| {
                let id = image_id(job, t, i);
                ImageView {
                    url: format!("/api/v1/images/{id}"),
                    thumbnail_url: format!("/api/v1/images/{id}/thumbnail"),
                    image_id: id,
                    width: o.width,
                    height: o.height,
                    file_size: o.bytes,
                }
            })
            .collect()
    });
    let error_message = matches!(status, Status::Failed | Status::Retrying)
        .then(|| {
            task.and_then(|t| t.failure.as_ref())
                .map(|f| f.message.clone())
                .or_else(|| {
                    (job.state == pb::JobState::Cancelled as i32).then(|| "任务已取消".to_string())
                })
        })
        .flatten();
    TaskView {
        task_id: job.id.clone(),
        status,
        progress: if status == Status::Completed {
            100
        } else {
            task.map_or(0, |t| t.percent.min(100))
        },
        prompt: params.prompt,
        negative_prompt: params.negative_prompt,
        model: params.model,
        width: params.width,
        height: params.height,
        num_images: params.num_images,
        steps: params.steps,
        scale: params.guidance_scale,
        seed: params.seed,
        images,
        error_message,
        // Retries made or, while `retrying`, about to be made.
        retry_count: task.map_or(0, |t| {
            if status == Status::Retrying {
                t.attempts
            } else {
                t.attempts.saturating_sub(1)
            }
        }),
        created_at: time::to_text(job.created_at.as_ref()),
        started_at: time::to_text(task.and_then(|t| t.started_at.as_ref())),
        completed_at: status
            .finished()
            .then(|| time::to_text(job.finished_at.as_ref()))
            .flatten(),
    }
}

/// The generate job of a request.
fn generate_job(body: &GenerateRequest) -> Result<pb::SubmitJobRequest, ApiError> {
    if body.prompt.trim().is_empty() {
        let mut err = ApiError::field("prompt", "提示词不能为空");
        err.message = "提示词不能为空".into();
        return Err(err);
    }
    let (width, height) = match body.size.as_deref().map(str::trim) {
        None | Some("") => (body.width.unwrap_or(0), body.height.unwrap_or(0)),
        Some(size) => {
            let preset = SIZE_PRESETS
                .iter()
                .find(|(name, _, _)| name.eq_ignore_ascii_case(size))
                .ok_or_else(|| {
                    let names: Vec<&str> = SIZE_PRESETS.iter().map(|p| p.0).collect();
                    ApiError::field("size", format!("one of {}", names.join(", ")))
                })?;
            (preset.1, preset.2)
        }
    };
    Ok(pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Generate(pb::GenerateParams {
                prompt: body.prompt.trim().to_string(),
                negative_prompt: body.negative_prompt.clone().unwrap_or_default(),
                model: body.model.clone().unwrap_or_default(),
                width,
                height,
                num_images: body.num_images.unwrap_or(1),
                steps: body.steps.unwrap_or(0),
                guidance_scale: body.scale.unwrap_or(0.0),
                seed: body.seed,
            })),
        }),
        labels: HashMap::from([(FAMILY_LABEL.0.to_string(), FAMILY_LABEL.1.to_string())]),
        family: Family::Generator.as_str().to_string(),
        ..Default::default()
    })
}

async fn create(
    state: &AppState,
    caller: &Caller,
    body: &GenerateRequest,
) -> Result<pb::Job, GeneratorError> {
    let request = generate_job(body)?;
    Ok(state
        .jobs
        .clone()
        .submit_job(caller.request(request))
        .await?
        .into_inner())
}

/// Start generating images.
#[utoipa::path(
    post,
    path = "/api/v1/generate",
    operation_id = "generatorGenerate",
    tag = "compat-generator",
    request_body = GenerateRequest,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 429, description = "Too many requests or active tasks", body = GeneratorErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn generate(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<GenerateRequest>,
) -> Result<(StatusCode, Json<Created>), GeneratorError> {
    let caller = caller?;
    let job = create(&state, &caller, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            task_id: job.id.clone(),
            status: Status::Pending,
            created_at: time::to_text(job.created_at.as_ref()),
            estimated_time: job.estimated_seconds,
        }),
    ))
}

async fn fetch(state: &AppState, caller: &Caller, id: &str) -> Result<pb::Job, GeneratorError> {
    let Ok(id) = uuid::Uuid::parse_str(id.trim()) else {
        return Err(GeneratorError::not_found());
    };
    let job = state
        .jobs
        .clone()
        .get_job(caller.request(pb::GetJobRequest {
            job_id: id.to_string(),
        }))
        .await
        .map_err(|status| match ApiError::from(status) {
            e if e.code == ErrorCode::NotFound => GeneratorError::not_found(),
            e => GeneratorError::from(e),
        })?
        .into_inner();
    // Jobs of other families are not this service's tasks.
    if job.labels.get(FAMILY_LABEL.0).map(String::as_str) != Some(FAMILY_LABEL.1) {
        return Err(GeneratorError::not_found());
    }
    Ok(job)
}

/// The state, progress and images of one task.
#[utoipa::path(
    get,
    path = "/api/v1/task/{task_id}",
    operation_id = "generatorTask",
    tag = "compat-generator",
    params(
        ("task_id" = String, Path, description = "The task id `POST /api/v1/generate` answered"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn task(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(task_id): PathParam<String>,
) -> Result<Json<TaskView>, GeneratorError> {
    let caller = caller?;
    let job = fetch(&state, &caller, &task_id).await?;
    Ok(Json(task_view(&job)))
}

/// The answer of the deletes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorDeleted)]
pub struct Deleted {
    pub task_id: String,
    /// `cancelled` (the task was still running) or `deleted`.
    pub status: String,
    pub message: String,
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    task_id: &str,
    cancel_active: bool,
) -> Result<Deleted, GeneratorError> {
    let job = fetch(state, caller, task_id).await?;
    if !status_of(&job).finished() {
        if !cancel_active {
            return Err(ApiError::field("task_id", "任务尚未完成，不能从历史记录中删除").into());
        }
        state
            .jobs
            .clone()
            .cancel_job(caller.request(pb::CancelJobRequest {
                job_id: job.id.clone(),
            }))
            .await?;
        return Ok(Deleted {
            task_id: job.id,
            status: "cancelled".into(),
            message: "任务已取消".into(),
        });
    }
    state
        .jobs
        .clone()
        .delete_job(caller.request(pb::DeleteJobRequest {
            job_id: job.id.clone(),
        }))
        .await?;
    Ok(Deleted {
        task_id: job.id,
        status: "deleted".into(),
        message: "任务已删除".into(),
    })
}

/// Delete a task: a running one is cancelled, a finished one deleted with its images.
#[utoipa::path(
    delete,
    path = "/api/v1/task/{task_id}",
    operation_id = "generatorDeleteTask",
    tag = "compat-generator",
    params(
        ("task_id" = String, Path, description = "The task"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 200, description = "Cancelled or deleted", body = Deleted),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_task(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(task_id): PathParam<String>,
) -> Result<Json<Deleted>, GeneratorError> {
    Ok(Json(remove(&state, &caller?, &task_id, true).await?))
}

/// Delete a finished task from the history, with its images.
#[utoipa::path(
    delete,
    path = "/api/v1/history/{task_id}",
    operation_id = "generatorDeleteHistory",
    tag = "compat-generator",
    params(
        ("task_id" = String, Path, description = "A finished task"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_history(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(task_id): PathParam<String>,
) -> Result<Json<Deleted>, GeneratorError> {
    Ok(Json(remove(&state, &caller?, &task_id, false).await?))
}

/// Paging and filter of `GET /api/v1/tasks` and `GET /api/v1/history`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this state (`GET /api/v1/tasks`).
    pub status: Option<Status>,
    /// 1..=100, default 20.
    pub limit: Option<u32>,
    /// Tasks to skip, default 0.
    pub offset: Option<u32>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorTaskList)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Tasks matching, before paging.
    pub total: u32,
    pub limit: u32,
    pub offset: u32,
}

/// A page of finished tasks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorHistory)]
pub struct HistoryList {
    pub items: Vec<TaskView>,
    pub total: u32,
    pub limit: u32,
    pub offset: u32,
}

async fn page(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    keep: impl Fn(Status) -> bool,
) -> Result<(Vec<TaskView>, u32, u32, u32), GeneratorError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "1..=100").into());
    }
    let offset = query.offset.unwrap_or(0);
    let filter = pb::ListJobsRequest {
        label: format!("{}={}", FAMILY_LABEL.0, FAMILY_LABEL.1),
        ..Default::default()
    };
    let matching: Vec<TaskView> = list_all(state, caller, filter)
        .await?
        .iter()
        .map(task_view)
        .filter(|t| keep(t.status))
        .collect();
    let total = u32::try_from(matching.len()).unwrap_or(u32::MAX);
    let tasks = matching
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok((tasks, total, limit, offset))
}

/// The caller's tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    operation_id = "generatorTasks",
    tag = "compat-generator",
    params(ListQuery, ("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn tasks(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<TaskList>, GeneratorError> {
    let caller = caller?;
    let wanted = query.status;
    let (tasks, total, limit, offset) =
        page(&state, &caller, &query, |s| wanted.is_none_or(|w| w == s)).await?;
    Ok(Json(TaskList {
        tasks,
        total,
        limit,
        offset,
    }))
}

/// The caller's finished tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/history",
    operation_id = "generatorHistory",
    tag = "compat-generator",
    params(ListQuery, ("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "A page of finished tasks", body = HistoryList),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<HistoryList>, GeneratorError> {
    let caller = caller?;
    let (items, total, limit, offset) = page(&state, &caller, &query, Status::finished).await?;
    Ok(Json(HistoryList {
        items,
        total,
        limit,
        offset,
    }))
}

async fn image_link(
    state: &AppState,
    caller: &Caller,
    image_id: &str,
    thumbnail: bool,
) -> Result<Response, GeneratorError> {
    let missing = || GeneratorError::from(ApiError::new(ErrorCode::NotFound, "图片不存在"));
    let (job_id, task, output) = parse_image_id(image_id).ok_or_else(missing)?;
    let job = fetch(state, caller, &job_id).await.map_err(|_| missing())?;
    let output = job
        .tasks
        .iter()
        .find(|t| t.index == task)
        .and_then(|t| t.outputs.get(output))
        .ok_or_else(missing)?;
    let url = if thumbnail {
        output.thumbnail.as_ref().map_or(&output.url, |t| &t.url)
    } else {
        &output.url
    };
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/')) {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the stored image has no link a browser can open; configure signed links or a public base URL",
        )
        .into());
    }
    Ok(Redirect::temporary(url).into_response())
}

/// An image's bytes (a redirect to its link).
#[utoipa::path(
    get,
    path = "/api/v1/images/{image_id}",
    operation_id = "generatorImage",
    tag = "compat-generator",
    params(
        ("image_id" = String, Path, description = "An `image_id` of a task"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 307, description = "The image's link"),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn image(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(image_id): PathParam<String>,
) -> Result<Response, GeneratorError> {
    image_link(&state, &caller?, &image_id, false).await
}

/// An image's thumbnail (a redirect to its link).
#[utoipa::path(
    get,
    path = "/api/v1/images/{image_id}/thumbnail",
    operation_id = "generatorThumbnail",
    tag = "compat-generator",
    params(
        ("image_id" = String, Path, description = "An `image_id` of a task"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 307, description = "The thumbnail's link"),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(image_id): PathParam<String>,
) -> Result<Response, GeneratorError> {
    image_link(&state, &caller?, &image_id, true).await
}

/// One model of `GET /api/v1/models`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorModel)]
pub struct ModelView {
    pub id: String,
    pub name: String,
    pub provider: String,
}

/// The models that generate images.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorModels)]
pub struct ModelsView {
    pub models: Vec<ModelView>,
}

/// The models that generate images.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "generatorModels",
    tag = "compat-generator",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "The models", body = ModelsView),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn models(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<Json<ModelsView>, GeneratorError> {
    let caller = caller?;
    let list = state
        .jobs
        .clone()
        .list_models(caller.request(pb::ListModelsRequest {}))
        .await?
        .into_inner();
    Ok(Json(ModelsView {
        models: list
            .models
            .into_iter()
            .filter(|m| m.kinds.contains(&(pb::JobKind::Generate as i32)))
            .map(|m| ModelView {
                name: m.id.clone(),
                id: m.id,
                provider: m.provider,
            })
            .collect(),
    }))
}

/// `GET /api/v1/system/info`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorSystemInfo)]
pub struct SystemInfo {
    pub name: String,
    pub version: String,
    pub api_version: String,
    /// `serving` when the orchestrator answers.
    pub orchestrator: String,
    pub size_presets: Vec<String>,
    pub max_num_images: u32,
    /// Requests a minute per key; 0 means no limit.
    pub rate_limit_per_minute: u32,
}

/// What this service is and how it is set up.
#[utoipa::path(
    get,
    path = "/api/v1/system/info",
    operation_id = "generatorSystemInfo",
    tag = "compat-generator",
    responses(
        (status = 200, description = "The service", body = SystemInfo),
        (status = "default", description = "An error", body = GeneratorErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn info(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<RateLimiter>>,
    caller: Result<Caller, ApiError>,
) -> Result<Json<SystemInfo>, GeneratorError> {
    let caller = caller?;
    // The key is checked as every other route checks it: by the orchestrator.
    state
        .accounts
        .clone()
        .get_account(caller.request(pb::GetAccountRequest::default()))
        .await?;
    Ok(Json(SystemInfo {
        name: "atelier".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: "v1".into(),
        orchestrator: orchestrator_health(&state).await.to_string(),
        size_presets: SIZE_PRESETS.iter().map(|p| p.0.to_string()).collect(),
        max_num_images: 4,
        rate_limit_per_minute: limiter.per_minute,
    }))
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneratorHealth)]
pub struct HealthView {
    /// `healthy`, or `unhealthy` when the orchestrator does not serve.
    pub status: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub version: String,
}

/// Health; needs no key.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    operation_id = "generatorHealth",
    tag = "compat-generator",
    responses(
        (status = 200, description = "Healthy", body = HealthView),
        (status = 503, description = "The orchestrator does not serve", body = HealthView),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let serving = orchestrator_health(&state).await == "serving";
    let (code, word) = if serving {
        (StatusCode::OK, "healthy")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    (
        code,
        Json(HealthView {
            status: word.into(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
}

/// The first message of a stream: a task to follow, or one to create.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StreamStart {
    Follow { task_id: String },
    Create(GenerateRequest),
}

/// What the stream sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamMessage {
    Task { task: TaskView },
    Done { task: TaskView },
    Error { error: String, message: String },
}

/// How long the stream waits for the client's first message.
const FIRST_MESSAGE_WITHIN: Duration = Duration::from_secs(30);

/// A task's progress over a WebSocket (see the module docs for the messages).
pub async fn stream(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, GeneratorError> {
    let caller = caller?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        follow(socket, state, caller).await;
    }))
}

async fn send(socket: &mut WebSocket, message: &StreamMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn refuse(socket: &mut WebSocket, err: GeneratorError) {
    let message = StreamMessage::Error {
        error: err.body.error,
        message: err.body.message,
    };
    send(socket, &message).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn follow(mut socket: WebSocket, state: AppState, caller: Caller) {
    let first = match tokio::time::timeout(FIRST_MESSAGE_WITHIN, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => {
            serde_json::from_str::<StreamStart>(&text).map_err(|e| {
                ApiError::bad_request(format!("send a generate request or {{\"task_id\"}}: {e}"))
            })
        }
        Ok(Some(Ok(_))) => Err(ApiError::bad_request(
            "send a JSON text message: a generate request or {\"task_id\"}",
        )),
        // The client left or sent nothing.
        _ => return,
    };
    let job = match first {
        Err(e) => return refuse(&mut socket, e.into()).await,
        Ok(StreamStart::Follow { task_id }) => fetch(&state, &caller, &task_id).await,
        Ok(StreamStart::Create(body)) => create(&state, &caller, &body).await,
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => return refuse(&mut socket, e).await,
    };
    let events = state
        .jobs
        .clone()
        .watch_job(caller.request(pb::WatchJobRequest {
            job_id: job.id.clone(),
            after_sequence: 0,
        }))
        .await;
    let mut events = match events {
        Ok(events) => events.into_inner(),
        Err(status) => return refuse(&mut socket, status.into()).await,
    };
    let first = task_view(&job);
    let mut last = (first.status, first.progress);
    if !send(&mut socket, &StreamMessage::Task { task: first }).await {
        return;
    }
    // Every change of the task is sent once; the watch ends when the job has finished.
    while let Some(event) = events.next().await {
        if event.is_err() {
            break;
        }
        let Ok(now) = fetch(&state, &caller, &job.id).await else {
            break;
        };
        let view = task_view(&now);
        if view.status.finished() {
            break;
        }
        let now_at = (view.status, view.progress);
        if now_at != last {
            if !send(&mut socket, &StreamMessage::Task { task: view }).await {
                return;
            }
            last = now_at;
        }
    }
    match fetch(&state, &caller, &job.id).await {
        Ok(done) if status_of(&done).finished() => {
            send(
                &mut socket,
                &StreamMessage::Done {
                    task: task_view(&done),
                },
            )
            .await;
            let _ = socket.send(Message::Close(None)).await;
        }
        Ok(_) => {
            let err = ApiError::new(
                ErrorCode::Unavailable,
                "the task's event stream broke off; reconnect with {\"task_id\"}",
            );
            refuse(&mut socket, err.into()).await;
        }
        Err(e) => refuse(&mut socket, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_at_the_configured_rate() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        assert_eq!(limiter.check(b"k", t0), Ok(()));
        assert_eq!(limiter.check(b"k", t0), Ok(()));
        // Two a minute: the next token comes 30 s later.
        assert_eq!(limiter.check(b"k", t0), Err(30));
        assert_eq!(limiter.check(b"other", t0), Ok(()));
        assert_eq!(limiter.check(b"k", t0 + Duration::from_secs(29)), Err(1));
        assert_eq!(limiter.check(b"k", t0 + Duration::from_secs(31)), Ok(()));
        assert_eq!(RateLimiter::new(0).check(b"k", t0), Ok(()));
    }

    #[test]
    fn image_ids_round_trip() {
        let job = pb::Job {
            id: "0194f7a2-1c2d-7e3f-8a9b-0c1d2e3f4a5b".into(),
            ..Default::default()
        };
        let id = image_id(&job, 0, 3);
        assert_eq!(id, "img_0194f7a21c2d7e3f8a9b0c1d2e3f4a5b_0_3");
        assert_eq!(parse_image_id(&id), Some((job.id.clone(), 0, 3)));
        assert_eq!(parse_image_id("img_nope_0_0"), None);
        assert_eq!(parse_image_id(&format!("{id}_9")), None);
    }

    #[test]
    fn requests_map_to_generate_params_and_presets() {
        let body = GenerateRequest {
            prompt: "一只可爱的猫咪".into(),
            negative_prompt: Some("模糊, 低质量".into()),
            model: Some("general_v2.0".into()),
            size: Some("1024x768".into()),
            num_images: Some(2),
            steps: Some(20),
            scale: Some(7.5),
            seed: Some(42),
            ..Default::default()
        };
        let req = generate_job(&body).expect("valid");
        let Some(pb::job_params::Params::Generate(g)) = req.params.and_then(|p| p.params) else {
            panic!("not a generate job")
        };
        assert_eq!(
            (g.width, g.height, g.num_images, g.steps),
            (1024, 768, 2, 20)
        );
        assert_eq!((g.guidance_scale, g.seed), (7.5, Some(42)));
        let empty = generate_job(&GenerateRequest::default()).expect_err("empty prompt");
        assert_eq!(empty.message, "提示词不能为空");
        let bad = GenerateRequest {
            prompt: "x".into(),
            size: Some("huge".into()),
            ..Default::default()
        };
        assert_eq!(
            generate_job(&bad).expect_err("bad size").details[0].field,
            "size"
        );
    }
}
