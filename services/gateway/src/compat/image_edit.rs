//! Seed 004: the image-edit service (`POST /api/v1/image-edit/submit`,
//! `GET /api/v1/image-edit/task/{id}`, `GET /api/v1/image-edit/statistics`).
//!
//! A submit is a multipart form: one or more `images` files, `edit_type` (a word such as `enhance`)
//! and `edit_params`, JSON with the `prompt`. Each file is streamed into an upload as it arrives (the
//! same path as `POST /v1/uploads`, with its size cap), then one Atelier `edit` job is submitted with a
//! task per image, in form order. The old service called the model once per image with at most three
//! in flight; Atelier does the same per task, and a repeated image with the same prompt is served from
//! the processor's content cache (`from_cache: true`), as the old `image_hash + edit_type + prompt`
//! cache did. The gateway keeps no state: the family, the edit type and each file name ride on the
//! job as labels, so at most [`MAX_IMAGES`] images fit in one submit.
//!
//! Choices where the document is silent:
//! - The submit answers `{task_id, status: "pending", total_images, message}`.
//! - States: `pending` (queued), `processing` (running), `completed` (succeeded, also when only some
//!   images succeeded: each result says which), `failed` (failed or cancelled). Per image:
//!   `pending`, `processing`, `completed`, `failed`.
//! - `progress` is the mean of the images' progress (a finished image counts 100), 0..=100.
//! - The edit type does not reach the model (the prompt says what to do), so two edit types with the
//!   same image and prompt share a cached result.
//! - Errors answer as FastAPI did, `{"detail": "..."}`, with the Atelier `code` beside it and the
//!   HTTP status of SPEC §5.

use std::collections::HashMap;

use atelier_codes::family::Family;
use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{CompatError, ErrorShape};
use super::list_all;
use crate::call::Caller;
use crate::error::ApiError;
use crate::model::time;
use crate::routes::uploads::{multipart_error, upload_part};
use crate::state::AppState;

/// Label marking jobs made through this family.
const FAMILY_LABEL: (&str, &str) = ("compat", "image_edit");
/// Label carrying `edit_type`.
const EDIT_TYPE_LABEL: &str = "edit_type";
/// Prefix of the labels carrying each image's file name (`file.0`, `file.1`, …).
const FILE_LABEL: &str = "file.";
/// Most images in one submit: a job carries at most 32 labels, two of them the family's own.
pub const MAX_IMAGES: usize = 30;
/// Longest label value the orchestrator keeps.
const MAX_LABEL_LEN: usize = 256;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/image-edit/submit", post(submit))
        .route("/api/v1/image-edit/task/{task_id}", get(task))
        .route("/api/v1/image-edit/statistics", get(statistics))
}

/// An error of this family, answered with an [`ImageEditErrorBody`].
pub type ImageEditError = CompatError<ImageEditErrorBody>;

// `JsonBody`, `QueryParams` and `PathParam` whose rejections answer as a `ImageEditError`.
crate::extract::extractors!(ImageEditError);

/// An error as the old FastAPI service answered it, with the Atelier code beside it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ImageEditError)]
pub struct ImageEditErrorBody {
    /// What went wrong.
    pub detail: String,
    /// The SPEC §5 code.
    pub code: u32,
}

impl ErrorShape for ImageEditErrorBody {
    fn from_api(err: ApiError) -> ImageEditError {
        CompatError::new(
            err.status,
            Self {
                detail: err.message,
                code: err.code.number(),
            },
        )
    }
}

/// `edit_params`: what the model is asked to do.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ImageEditParams)]
pub struct EditParams {
    /// What to change, for example `修复面部瑕疵和皱纹`.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// A model name `GET /v1/models` lists; empty for the processor's default edit model.
    #[serde(default)]
    pub model: Option<String>,
}

/// The submit form, for the OpenAPI document (the handler reads the multipart stream itself).
#[derive(ToSchema)]
#[schema(as = ImageEditSubmitForm)]
#[allow(dead_code)]
pub struct SubmitForm {
    /// One part per image (JPEG, PNG or WebP), in order.
    #[schema(content_media_type = "application/octet-stream")]
    images: Vec<Vec<u8>>,
    /// The kind of edit, for example `enhance`.
    edit_type: String,
    /// JSON: `{"prompt": "..."}`.
    edit_params: String,
}

/// A task's state in this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ImageEditStatus)]
pub enum Status {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// The answer of a submit.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ImageEditSubmitted)]
pub struct Submitted {
    pub task_id: String,
    pub status: Status,
    pub total_images: u32,
    pub message: String,
}

/// One image of a task.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ImageEditResult)]
pub struct ImageResult {
    /// Position in the submitted form, from 0.
    pub index: u32,
    pub filename: String,
    pub status: Status,
    /// The edited image, once `completed`.
    pub result_url: Option<String>,
    /// Whether the result came from the cache instead of a model call.
    pub from_cache: bool,
    /// Why the image failed, once `failed`.
    pub error: Option<String>,
}

/// A task as this API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ImageEditTask)]
pub struct TaskView {
    pub task_id: String,
    pub status: Status,
    pub edit_type: String,
    pub total_images: u32,
    /// Images that finished with a result.
    pub completed_images: u32,
    /// 0..=100.
    pub progress: u32,
    pub results: Vec<ImageResult>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// Counts over every task of this family the caller can see.
#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
#[schema(as = ImageEditStatistics)]
pub struct Statistics {
    pub total_tasks: u32,
    pub total_images: u32,
    pub completed_tasks: u32,
    pub failed_tasks: u32,
    pub completed_images: u32,
    pub failed_images: u32,
    /// Images served from the cache.
    pub cache_hits: u32,
    /// Images that needed a model call.
    pub cache_misses: u32,
    /// Percent of finished images served from the cache.
    pub cache_hit_rate: f64,
    /// Percent of tasks that completed.
    pub completion_rate: f64,
    /// Percent of tasks that failed.
    pub failure_rate: f64,
}

fn job_status(job: &pb::Job) -> Status {
    use pb::JobState as S;
    match S::try_from(job.state) {
        Ok(S::Succeeded | S::PartiallySucceeded) => Status::Completed,
        Ok(S::Failed | S::Cancelled) => Status::Failed,
        Ok(S::Running) => Status::Processing,
        _ => Status::Pending,
    }
}

fn task_status(task: &pb::Task) -> Status {
    use pb::TaskState as S;
    match S::try_from(task.state) {
        Ok(S::Succeeded) => Status::Completed,
        Ok(S::Failed | S::Cancelled) => Status::Failed,
        Ok(S::Running) => Status::Processing,
        _ => Status::Pending,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (f64::from(part) * 10_000.0 / f64::from(whole)).round() / 100.0
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Submit images for editing.
#[utoipa::path(
    post,
    path = "/api/v1/image-edit/submit",
    operation_id = "imageEditSubmit",
    tag = "compat-image-edit",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    request_body(content = inline(SubmitForm), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Queued", body = Submitted),
        (status = "default", description = "An error", body = ImageEditErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Json<Submitted>, ImageEditError> {
    let caller = caller?;
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::bad_request(format!("send a multipart form: {}", e.body_text())))?;
    let mut uploads: Vec<pb::Upload> = Vec::new();
    let mut edit_type = None;
    let mut edit_params = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "images" | "image" => {
                if uploads.len() == MAX_IMAGES {
                    return Err(ApiError::field(
                        "images",
                        format!("at most {MAX_IMAGES} images in one task"),
                    )
                    .into());
                }
                uploads.push(upload_part(&state, &caller, field).await?);
            }
            "edit_type" => edit_type = Some(field.text().await.map_err(multipart_error)?),
            "edit_params" => edit_params = Some(field.text().await.map_err(multipart_error)?),
            // Other fields are ignored, as the old service's form parser did.
            _ => {}
        }
    }
    let request = edit_job(&uploads, edit_type.as_deref(), edit_params.as_deref())?;
    let job = state
        .jobs
        .clone()
        .submit_job(caller.request(request))
        .await?
        .into_inner();
    Ok(Json(Submitted {
        task_id: job.id.clone(),
        status: job_status(&job),
        total_images: count(job.tasks.len()),
        message: "任务已提交".to_string(),
    }))
}

/// The edit job of a submitted form.
fn edit_job(
    uploads: &[pb::Upload],
    edit_type: Option<&str>,
    edit_params: Option<&str>,
) -> Result<pb::SubmitJobRequest, ApiError> {
    if uploads.is_empty() {
        return Err(ApiError::field("images", "send at least one image file"));
    }
    let edit_type = edit_type.map(str::trim).unwrap_or_default();
    if edit_type.is_empty() {
        return Err(ApiError::field("edit_type", "must not be empty"));
    }
    let params: EditParams = match edit_params.map(str::trim) {
        None | Some("") => EditParams::default(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ApiError::field("edit_params", format!("not a JSON object: {e}")))?,
    };
    let prompt = params.prompt.as_deref().map(str::trim).unwrap_or_default();
    if prompt.is_empty() {
        return Err(ApiError::field(
            "edit_params.prompt",
            "must say what to change in the images",
        ));
    }
    let mut labels = HashMap::from([
        (FAMILY_LABEL.0.to_string(), FAMILY_LABEL.1.to_string()),
        (EDIT_TYPE_LABEL.to_string(), clip(edit_type, MAX_LABEL_LEN)),
    ]);
    for (i, upload) in uploads.iter().enumerate() {
        if !upload.filename.is_empty() {
            labels.insert(
                format!("{FILE_LABEL}{i}"),
                clip(&upload.filename, MAX_LABEL_LEN),
            );
        }
    }
    Ok(pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Edit(pb::EditParams {
                prompt: prompt.to_string(),
                negative_prompt: params.negative_prompt.unwrap_or_default(),
                model: params.model.unwrap_or_default(),
                ..Default::default()
            })),
        }),
        sources: uploads
            .iter()
            .map(|u| pb::Source {
                source: Some(pb::source::Source::UploadId(u.id.clone())),
            })
            .collect(),
        labels,
        family: Family::ImageEdit.as_str().to_string(),
        ..Default::default()
    })
}

fn task_view(job: &pb::Job) -> TaskView {
    let results: Vec<ImageResult> = job
        .tasks
        .iter()
        .map(|t| {
            let status = task_status(t);
            ImageResult {
                index: t.index,
                filename: job
                    .labels
                    .get(&format!("{FILE_LABEL}{}", t.index))
                    .cloned()
                    .unwrap_or_default(),
                status,
                result_url: (status == Status::Completed)
                    .then(|| t.outputs.first().map(|o| o.url.clone()))
                    .flatten(),
                from_cache: t.from_cache,
                error: t.failure.as_ref().map(|f| f.message.clone()),
            }
        })
        .collect();
    let finished = |t: &pb::Task| matches!(task_status(t), Status::Completed | Status::Failed);
    let progress_sum: u64 = job
        .tasks
        .iter()
        .map(|t| {
            if finished(t) {
                100
            } else {
                u64::from(t.percent.min(100))
            }
        })
        .sum();
    let progress = match job.tasks.len() as u64 {
        0 => 0,
        n => u32::try_from(progress_sum / n).unwrap_or(100),
    };
    TaskView {
        task_id: job.id.clone(),
        status: job_status(job),
        edit_type: job.labels.get(EDIT_TYPE_LABEL).cloned().unwrap_or_default(),
        total_images: count(job.tasks.len()),
        completed_images: count(
            results
                .iter()
                .filter(|r| r.status == Status::Completed)
                .count(),
        ),
        progress,
        results,
        created_at: time::to_text(job.created_at.as_ref()),
        completed_at: time::to_text(job.finished_at.as_ref()),
    }
}

/// The state of a task and of each of its images.
#[utoipa::path(
    get,
    path = "/api/v1/image-edit/task/{task_id}",
    operation_id = "imageEditTask",
    tag = "compat-image-edit",
    params(
        ("task_id" = String, Path, description = "The task id the submit answered"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The end user"),
    ),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = "default", description = "An error", body = ImageEditErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn task(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(task_id): PathParam<String>,
) -> Result<Json<TaskView>, ImageEditError> {
    let caller = caller?;
    let id = uuid::Uuid::parse_str(task_id.trim())
        .map_err(|_| ApiError::field("task_id", "not a task id (a UUID)"))?;
    let job = state
        .jobs
        .clone()
        .get_job(caller.request(pb::GetJobRequest {
            job_id: id.to_string(),
        }))
        .await?
        .into_inner();
    // Jobs of other families are not this service's tasks.
    if job.labels.get(FAMILY_LABEL.0).map(String::as_str) != Some(FAMILY_LABEL.1) {
        return Err(ApiError::new(ErrorCode::NotFound, "任务不存在").into());
    }
    Ok(Json(task_view(&job)))
}

fn statistics_of(jobs: &[pb::Job]) -> Statistics {
    let mut s = Statistics {
        total_tasks: count(jobs.len()),
        ..Statistics::default()
    };
    for job in jobs {
        match job_status(job) {
            Status::Completed => s.completed_tasks += 1,
            Status::Failed => s.failed_tasks += 1,
            Status::Pending | Status::Processing => {}
        }
        for t in &job.tasks {
            s.total_images += 1;
            match task_status(t) {
                Status::Completed if t.from_cache => {
                    s.completed_images += 1;
                    s.cache_hits += 1;
                }
                Status::Completed => {
                    s.completed_images += 1;
                    s.cache_misses += 1;
                }
                Status::Failed => s.failed_images += 1,
                Status::Pending | Status::Processing => {}
            }
        }
    }
    s.cache_hit_rate = percent(s.cache_hits, s.cache_hits + s.cache_misses);
    s.completion_rate = percent(s.completed_tasks, s.total_tasks);
    s.failure_rate = percent(s.failed_tasks, s.total_tasks);
    s
}

/// Task, image and cache counts of this family.
#[utoipa::path(
    get,
    path = "/api/v1/image-edit/statistics",
    operation_id = "imageEditStatistics",
    tag = "compat-image-edit",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The end user")),
    responses(
        (status = 200, description = "The counts", body = Statistics),
        (status = "default", description = "An error", body = ImageEditErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn statistics(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> Result<Json<Statistics>, ImageEditError> {
    let caller = caller?;
    let filter = pb::ListJobsRequest {
        label: format!("{}={}", FAMILY_LABEL.0, FAMILY_LABEL.1),
        ..Default::default()
    };
    let jobs = list_all(&state, &caller, filter).await?;
    Ok(Json(statistics_of(&jobs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str) -> pb::Upload {
        pb::Upload {
            id: format!("up-{name}"),
            filename: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_form_becomes_one_edit_job_with_a_task_per_image() {
        let req = edit_job(
            &[upload("a.jpg"), upload("b.png")],
            Some(" enhance "),
            Some(r#"{"prompt": "修复面部瑕疵和皱纹"}"#),
        )
        .expect("valid");
        assert_eq!(req.sources.len(), 2);
        assert_eq!(req.labels["compat"], "image_edit");
        assert_eq!(req.labels["edit_type"], "enhance");
        assert_eq!(req.labels["file.1"], "b.png");
        let Some(pb::job_params::Params::Edit(e)) = req.params.and_then(|p| p.params) else {
            panic!("not an edit")
        };
        assert_eq!(e.prompt, "修复面部瑕疵和皱纹");
    }

    #[test]
    fn forms_without_images_type_or_prompt_are_refused_by_field() {
        let field = |r: Result<pb::SubmitJobRequest, ApiError>| {
            r.expect_err("refused").details[0].field.clone()
        };
        let prompt = Some(r#"{"prompt": "x"}"#);
        assert_eq!(field(edit_job(&[], Some("enhance"), prompt)), "images");
        assert_eq!(field(edit_job(&[upload("a")], None, prompt)), "edit_type");
        assert_eq!(
            field(edit_job(&[upload("a")], Some("enhance"), Some("{}"))),
            "edit_params.prompt"
        );
        assert_eq!(
            field(edit_job(&[upload("a")], Some("enhance"), Some("not json"))),
            "edit_params"
        );
    }

    #[test]
    fn long_names_are_clipped_on_a_character_boundary() {
        let name = "图".repeat(100);
        let clipped = clip(&name, MAX_LABEL_LEN);
        assert!(clipped.len() <= MAX_LABEL_LEN);
        assert_eq!(clipped.chars().count(), MAX_LABEL_LEN / 3);
    }

    #[test]
    fn statistics_count_tasks_images_and_cache_hits() {
        let task = |state: pb::TaskState, cached: bool| pb::Task {
            state: state as i32,
            from_cache: cached,
            ..Default::default()
        };
        let jobs = [
            pb::Job {
                state: pb::JobState::Succeeded as i32,
                tasks: vec![
                    task(pb::TaskState::Succeeded, true),
                    task(pb::TaskState::Succeeded, false),
                ],
                ..Default::default()
            },
            pb::Job {
                state: pb::JobState::Failed as i32,
                tasks: vec![task(pb::TaskState::Failed, false)],
                ..Default::default()
            },
            pb::Job {
                state: pb::JobState::Running as i32,
                tasks: vec![task(pb::TaskState::Running, false)],
                ..Default::default()
            },
        ];
        let s = statistics_of(&jobs);
        assert_eq!(
            (
                s.total_tasks,
                s.total_images,
                s.completed_tasks,
                s.failed_tasks
            ),
            (3, 4, 1, 1)
        );
        assert_eq!((s.cache_hits, s.cache_misses, s.failed_images), (1, 1, 1));
        assert_eq!(s.cache_hit_rate, 50.0);
        assert_eq!(s.completion_rate, 33.33);
        assert_eq!(s.failure_rate, 33.33);
    }
}
