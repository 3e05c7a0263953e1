//! Seed 003: ImageStudio's front-end routes under `/api/image-studio/`, answered over the
//! orchestrator's StudioService (the studio lives in its database) and JobService (a studio job is an
//! ordinary job). JSON in the camelCase of the Next.js routes the front end called.
//!
//! | route | does |
//! | --- | --- |
//! | `GET folders?status=` | the SKU list (`{folders: [Folder]}`), newest first |
//! | `POST folders` `{sku, name?}` | a new workspace (201 `{folder}`; a taken SKU is 1005/409) |
//! | `GET folders/{sku}/pairs?approved=&archived=&hasResult=` | `{folder, pairs: [ImagePair]}`, oldest first |
//! | `POST upload` | multipart: `sku` then `file` parts, each streamed into an upload and added as a pair (the workspace is made for a new SKU); or JSON `{sku, urls}` → 201 `{folder, pairs}` |
//! | `POST jobs` `{sku, mode, pairId?, prompt?}` | a studio job (`batch`, `single`, `custom`) → 201 `{job: StudioJob}`; honours `Idempotency-Key` |
//! | `GET jobs?sku=&status=&limit=` | `{jobs: [StudioJob]}`, newest first (limit 1..=100, default 20) |
//! | `GET jobs/{id}`, `POST jobs/{id}/cancel` | `{job: StudioJob}`; a job that is not a studio job is 1004 |
//! | `GET job-logs/{id}` | `{logs: [{time, level, message, taskId}]}` |
//! | `GET`/`POST settings` | `{outputSize, model, additionalSettings, activePromptGroupId, updatedAt}`; a POST changes only the fields it sends |
//! | `GET`/`POST prompt-groups`, `POST prompt-groups/active` | `{groups}` / `{group}`: `{id, name, version, latestVersion, isActive, templates: [{name, content}], createdAt}` |
//! | `POST review/approve` `{sku, pairId, approved?}`, `POST review/batch` `{sku, pairIds, approved?}` | `{pair, folder}` / `{pairs, folder}` |
//! | `POST archive`, `POST archive/activate` `{sku}` | `{folder}` |
//! | `POST files/delete` `{sku, pairIds, sources?, results?, removePairs?}` | `{deleted, kept, pairs, removedPairIds, folder}` |
//! | `POST proxy` `{url}` (or `GET ?url=`) | the image itself, fetched through the guarded client ([`proxy`]) |
//!
//! Shapes (where the document names only the front end's types, `SKU` and `ImagePair`):
//! - Folder: `{id, sku, name, status: pending|approved|archived, total, generated, approved,
//!   thumbnail, createdAt, updatedAt}`; `generated` counts pairs with a result, `thumbnail` is the
//!   first pair's result link, else its source link.
//! - ImagePair: `{id, sku, inputUrl, outputUrl, inputName, outputName, status, approved, archived,
//!   metadata, jobId, taskId, createdAt, updatedAt}`; links are minted fresh on every read; `status`
//!   is `archived`, `approved`, `generated` (a result not yet approved) or `pending` (no result).
//! - StudioJob: `{id, sku, workspaceId, mode, status, progress, total, completed, failed, prompt,
//!   sourceImageUrls, resultImageUrls, items: [{index, taskId, pairId, status, progress, resultUrl,
//!   error}], createdAt, updatedAt, finishedAt}`. Job states read `queued`, `processing`,
//!   `completed` (also when only some images succeeded: each item says which), `failed`,
//!   `cancelled`; an item's `progress` is its task's percent, 100 once finished.
//!
//! Results are written into pairs by the orchestrator as each task succeeds; nothing here polls or
//! syncs as the old Next.js routes did. Errors answer `{"error": "<sentence>", "code": <SPEC §5
//! number>}` with the SPEC §5 HTTP status.

pub mod proxy;

use std::collections::HashMap;

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{CompatError, ErrorShape};
use crate::call::Caller;
use crate::error::ApiError;
use crate::model::time;
use crate::routes::uploads::{multipart_error, upload_part};
use crate::state::AppState;

/// Most pairs one upload request adds.
const MAX_UPLOAD_FILES: usize = 100;
/// Most log lines one answer carries.
const MAX_LOG_LINES: usize = 2_000;
/// Most jobs scanned to answer a listing without a SKU.
const MAX_JOB_SCAN: usize = 2_000;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/image-studio/folders",
            get(list_folders).post(create_folder),
        )
        .route("/api/image-studio/folders/{sku}/pairs", get(list_pairs))
        .route("/api/image-studio/upload", post(upload))
        .route("/api/image-studio/jobs", get(list_jobs).post(submit_job))
        .route("/api/image-studio/jobs/{id}", get(get_job))
        .route("/api/image-studio/jobs/{id}/cancel", post(cancel_job))
        .route("/api/image-studio/job-logs/{id}", get(job_logs))
        .route(
            "/api/image-studio/settings",
            get(get_settings).post(set_settings),
        )
        .route(
            "/api/image-studio/prompt-groups",
            get(list_prompt_groups).post(save_prompt_group),
        )
        .route(
            "/api/image-studio/prompt-groups/active",
            post(set_active_prompt_group),
        )
        .route("/api/image-studio/review/approve", post(review_one))
        .route("/api/image-studio/review/batch", post(review_batch))
        .route("/api/image-studio/archive", post(archive))
        .route("/api/image-studio/archive/activate", post(activate))
        .route("/api/image-studio/files/delete", post(delete_files))
        .route(
            "/api/image-studio/proxy",
            post(proxy::proxy_post).get(proxy::proxy_get),
        )
}

/// An error of these routes, answered with a [`StudioErrorBody`].
pub type StudioError = CompatError<StudioErrorBody>;

// `JsonBody`, `QueryParams` and `PathParam` whose rejections answer as a `StudioError`.
crate::extract::extractors!(StudioError);

/// An error of these routes: a sentence and the SPEC §5 code.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioError)]
pub struct StudioErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The SPEC §5 code.
    pub code: u32,
}

impl ErrorShape for StudioErrorBody {
    fn from_api(err: ApiError) -> StudioError {
        CompatError::new(
            err.status,
            Self {
                error: err.message,
                code: err.code.number(),
            },
        )
    }
}

type StudioResult<T> = Result<T, StudioError>;

// ---------------------------------------------------------------------------------------------
// Shapes

/// A workflow state of a folder (workspace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StudioFolderStatus)]
pub enum FolderStatus {
    Pending,
    Approved,
    Archived,
}

impl FolderStatus {
    fn of(state: i32) -> Self {
        match pb::WorkspaceState::try_from(state) {
            Ok(pb::WorkspaceState::Approved) => Self::Approved,
            Ok(pb::WorkspaceState::Archived) => Self::Archived,
            _ => Self::Pending,
        }
    }

    fn state(self) -> pb::WorkspaceState {
        match self {
            Self::Pending => pb::WorkspaceState::Pending,
            Self::Approved => pb::WorkspaceState::Approved,
            Self::Archived => pb::WorkspaceState::Archived,
        }
    }
}

/// A SKU folder: a workspace and the counts of its pairs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioFolder)]
pub struct Folder {
    pub id: String,
    pub sku: String,
    /// The title, or the SKU when it has none.
    pub name: String,
    pub status: FolderStatus,
    pub total: u32,
    /// Pairs with a result.
    pub generated: u32,
    pub approved: u32,
    /// The first pair's result link, else its source link.
    pub thumbnail: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl Folder {
    fn of(w: &pb::Workspace, thumbnail: Option<String>) -> Self {
        let counts = w.counts.unwrap_or_default();
        Self {
            id: w.id.clone(),
            sku: w.sku.clone(),
            name: if w.title.trim().is_empty() {
                w.sku.clone()
            } else {
                w.title.clone()
            },
            status: FolderStatus::of(w.state),
            total: counts.total,
            generated: counts.with_result,
            approved: counts.approved,
            thumbnail,
            created_at: time::to_text(w.created_at.as_ref()),
            updated_at: time::to_text(w.updated_at.as_ref()),
        }
    }
}

/// A pair's state as the front end shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StudioPairStatus)]
pub enum PairStatus {
    Pending,
    Generated,
    Approved,
    Archived,
}

/// A source image and its result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioImagePair)]
pub struct ImagePair {
    pub id: String,
    pub sku: String,
    pub input_url: String,
    pub output_url: Option<String>,
    pub input_name: String,
    pub output_name: Option<String>,
    pub status: PairStatus,
    pub approved: bool,
    pub archived: bool,
    /// The pair's metadata (a JSON object; `history` holds earlier results).
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub job_id: Option<String>,
    pub task_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// The last path segment of a URL, without its query.
fn url_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    (!name.is_empty() && !path.ends_with("//")).then(|| name.to_string())
}

impl ImagePair {
    fn of(p: &pb::ImagePair, sku: &str) -> Self {
        let metadata: Value = serde_json::from_str(&p.metadata).unwrap_or(Value::Null);
        let source_url = match p.source.as_ref().and_then(|s| s.source.as_ref()) {
            Some(pb::source::Source::Url(url)) => Some(url.as_str()),
            _ => None,
        };
        let input_name = metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| source_url.and_then(url_name))
            .unwrap_or_else(|| p.id.clone());
        let output_url = non_empty(&p.result_link);
        let output_name = output_url.as_ref().map(|_| {
            let result = non_empty(&p.result_key).unwrap_or_else(|| p.result_url.clone());
            let extension = url_name(&result)
                .and_then(|n| n.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()))
                .filter(|e| !e.is_empty() && e.len() <= 5)
                .unwrap_or_else(|| "png".to_string());
            let stem = input_name
                .rsplit_once('.')
                .map_or(input_name.as_str(), |(stem, _)| stem);
            format!("{stem}_result.{extension}")
        });
        let status = if p.archived {
            PairStatus::Archived
        } else if p.approved {
            PairStatus::Approved
        } else if output_url.is_some() {
            PairStatus::Generated
        } else {
            PairStatus::Pending
        };
        Self {
            id: p.id.clone(),
            sku: sku.to_string(),
            input_url: p.source_link.clone(),
            output_url,
            input_name,
            output_name,
            status,
            approved: p.approved,
            archived: p.archived,
            metadata: if metadata.is_object() {
                metadata
            } else {
                Value::Object(serde_json::Map::new())
            },
            job_id: non_empty(&p.job_id),
            task_id: non_empty(&p.task_id),
            created_at: time::to_text(p.created_at.as_ref()),
            updated_at: time::to_text(p.updated_at.as_ref()),
        }
    }

    fn all(pairs: &[pb::ImagePair], sku: &str) -> Vec<Self> {
        pairs.iter().map(|p| Self::of(p, sku)).collect()
    }
}

/// A studio job's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StudioJobMode)]
pub enum Mode {
    /// Every pair of the folder without a result.
    Batch,
    /// One pair (`pairId`).
    Single,
    /// The prompt given now, over `pairId` or as a batch.
    Custom,
}

impl Mode {
    fn pb(self) -> pb::StudioJobMode {
        match self {
            Self::Batch => pb::StudioJobMode::Batch,
            Self::Single => pb::StudioJobMode::Single,
            Self::Custom => pb::StudioJobMode::Custom,
        }
    }

    fn of(mode: i32) -> Option<Self> {
        match pb::StudioJobMode::try_from(mode) {
            Ok(pb::StudioJobMode::Batch) => Some(Self::Batch),
            Ok(pb::StudioJobMode::Single) => Some(Self::Single),
            Ok(pb::StudioJobMode::Custom) => Some(Self::Custom),
            _ => None,
        }
    }
}

/// A studio job's (or one image's) state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StudioJobStatus)]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    fn of_job(state: i32) -> Self {
        use pb::JobState as S;
        match S::try_from(state) {
            Ok(S::Running) => Self::Processing,
            Ok(S::Succeeded | S::PartiallySucceeded) => Self::Completed,
            Ok(S::Failed) => Self::Failed,
            Ok(S::Cancelled) => Self::Cancelled,
            _ => Self::Queued,
        }
    }

    fn of_task(state: i32) -> Self {
        use pb::TaskState as S;
        match S::try_from(state) {
            Ok(S::Running | S::RetryWait) => Self::Processing,
            Ok(S::Succeeded) => Self::Completed,
            Ok(S::Failed) => Self::Failed,
            Ok(S::Cancelled) => Self::Cancelled,
            _ => Self::Queued,
        }
    }

    fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The one Atelier state to filter a listing on, when there is exactly one.
    fn only_state(self) -> Option<pb::JobState> {
        match self {
            Self::Queued => Some(pb::JobState::Queued),
            Self::Processing => Some(pb::JobState::Running),
            Self::Failed => Some(pb::JobState::Failed),
            Self::Cancelled => Some(pb::JobState::Cancelled),
            Self::Completed => None,
        }
    }
}

/// Why an image failed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioItemError)]
pub struct ItemError {
    pub code: u32,
    pub message: String,
}

/// One image of a studio job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioJobItem)]
pub struct JobItem {
    pub index: u32,
    pub task_id: String,
    pub pair_id: Option<String>,
    pub status: JobStatus,
    /// 0..=100; 100 once finished.
    pub progress: u32,
    pub result_url: Option<String>,
    pub error: Option<ItemError>,
}

/// A studio job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioJob)]
pub struct StudioJob {
    pub id: String,
    pub sku: String,
    pub workspace_id: String,
    pub mode: Option<Mode>,
    pub status: JobStatus,
    /// The mean of the images' progress, 0..=100.
    pub progress: u32,
    pub total: u32,
    pub completed: u32,
    pub failed: u32,
    pub prompt: String,
    pub source_image_urls: Vec<String>,
    pub result_image_urls: Vec<String>,
    pub items: Vec<JobItem>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl StudioJob {
    fn of(s: &pb::StudioJob) -> Self {
        let job = s.job.clone().unwrap_or_default();
        let workspace = s.workspace.clone().unwrap_or_default();
        let items: Vec<JobItem> = job
            .tasks
            .iter()
            .map(|t| {
                let status = JobStatus::of_task(t.state);
                JobItem {
                    index: t.index,
                    task_id: t.id.clone(),
                    pair_id: s.pair_ids.get(t.index as usize).cloned(),
                    status,
                    progress: if status.finished() {
                        100
                    } else {
                        t.percent.min(100)
                    },
                    result_url: t.outputs.first().map(|o| o.url.clone()),
                    error: t.failure.as_ref().map(|f| ItemError {
                        code: f.code,
                        message: f.message.clone(),
                    }),
                }
            })
            .collect();
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let progress = if items.is_empty() {
            0
        } else {
            let sum: u64 = items.iter().map(|i| u64::from(i.progress)).sum();
            u32::try_from(sum / u64::from(total)).unwrap_or(100)
        };
        Self {
            id: job.id.clone(),
            sku: workspace.sku.clone(),
            workspace_id: workspace.id.clone(),
            mode: Mode::of(s.mode),
            status: JobStatus::of_job(job.state),
            progress,
            total,
            completed: count(&items, JobStatus::Completed),
            failed: count(&items, JobStatus::Failed),
            prompt: s.prompt.clone(),
            source_image_urls: job
                .tasks
                .iter()
                .filter_map(
                    |t| match t.source.as_ref().and_then(|s| s.source.as_ref()) {
                        Some(pb::source::Source::Url(url)) => Some(url.clone()),
                        Some(pb::source::Source::UploadId(id)) => Some(format!("upload:{id}")),
                        None => None,
                    },
                )
                .collect(),
            result_image_urls: items.iter().filter_map(|i| i.result_url.clone()).collect(),
            items,
            created_at: time::to_text(job.created_at.as_ref()),
            updated_at: time::to_text(job.updated_at.as_ref()),
            finished_at: time::to_text(job.finished_at.as_ref()),
        }
    }
}

fn count(items: &[JobItem], status: JobStatus) -> u32 {
    u32::try_from(items.iter().filter(|i| i.status == status).count()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Helpers over the gRPC services

async fn workspace_by_sku(
    state: &AppState,
    caller: &Caller,
    sku: &str,
) -> Result<pb::Workspace, ApiError> {
    let sku = sku.trim();
    if sku.is_empty() {
        return Err(ApiError::field("sku", "name the folder (its SKU)"));
    }
    Ok(state
        .studio
        .clone()
        .get_workspace(caller.request(pb::GetWorkspaceRequest {
            workspace: Some(pb::get_workspace_request::Workspace::Sku(sku.to_string())),
        }))
        .await?
        .into_inner())
}

/// The first pair's result link, else its source link.
async fn thumbnail(
    state: &AppState,
    caller: &Caller,
    workspace_id: &str,
) -> Result<Option<String>, ApiError> {
    let page = state
        .studio
        .clone()
        .list_pairs(caller.request(pb::ListPairsRequest {
            workspace_id: workspace_id.to_string(),
            page_size: 1,
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(page.pairs.first().and_then(thumbnail_of))
}

/// A folder's thumbnail from its first pair: the result's link, else the source's.
fn thumbnail_of(first: &pb::ImagePair) -> Option<String> {
    non_empty(&first.result_link).or_else(|| non_empty(&first.source_link))
}

/// The caller's preferences (the settings).
async fn preferences(state: &AppState, caller: &Caller) -> Result<pb::Preferences, ApiError> {
    Ok(state
        .studio
        .clone()
        .get_preferences(caller.request(pb::GetPreferencesRequest {}))
        .await?
        .into_inner())
}

async fn folder(state: &AppState, caller: &Caller, w: &pb::Workspace) -> Result<Folder, ApiError> {
    let thumbnail = if w.counts.unwrap_or_default().total == 0 {
        None
    } else {
        thumbnail(state, caller, &w.id).await?
    };
    Ok(Folder::of(w, thumbnail))
}

async fn folder_of(
    state: &AppState,
    caller: &Caller,
    w: Option<pb::Workspace>,
) -> Result<Folder, ApiError> {
    let w = w.ok_or_else(|| ApiError::internal("the studio answered without the workspace"))?;
    folder(state, caller, &w).await
}

async fn studio_job(state: &AppState, caller: &Caller, id: &str) -> Result<StudioJob, ApiError> {
    let found = state
        .studio
        .clone()
        .get_studio_job(caller.request(pb::GetStudioJobRequest {
            job_id: id.to_string(),
        }))
        .await?
        .into_inner();
    Ok(StudioJob::of(&found))
}

// ---------------------------------------------------------------------------------------------
// Folders and pairs

/// Query of the folder list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FoldersQuery {
    /// Only folders in this state.
    pub status: Option<FolderStatus>,
}

/// The folder list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioFolders)]
pub struct Folders {
    pub folders: Vec<Folder>,
}

/// A folder.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioFolderAnswer)]
pub struct FolderAnswer {
    pub folder: Folder,
}

/// The SKU folders, newest first.
#[utoipa::path(
    get,
    path = "/api/image-studio/folders",
    operation_id = "studioListFolders",
    tag = "compat-image-studio",
    params(FoldersQuery, ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The folders", body = Folders),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_folders(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<FoldersQuery>,
) -> StudioResult<Json<Folders>> {
    let caller = caller?;
    let mut folders = Vec::new();
    let mut token = String::new();
    loop {
        let page = state
            .studio
            .clone()
            .list_workspaces(caller.request(pb::ListWorkspacesRequest {
                state: query.status.map_or(0, |s| s.state() as i32),
                page_size: 500,
                page_token: token,
            }))
            .await?
            .into_inner();
        for w in &page.workspaces {
            folders.push(folder(&state, &caller, w).await?);
        }
        if page.next_page_token.is_empty() {
            return Ok(Json(Folders { folders }));
        }
        token = page.next_page_token;
    }
}

/// A new folder.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StudioNewFolder)]
pub struct NewFolder {
    /// The SKU, unique per user.
    pub sku: String,
    /// A title (defaults to the SKU).
    #[serde(default)]
    pub name: Option<String>,
}

/// Create a folder (a workspace for one SKU).
#[utoipa::path(
    post,
    path = "/api/image-studio/folders",
    operation_id = "studioCreateFolder",
    tag = "compat-image-studio",
    request_body = NewFolder,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 201, description = "Created", body = FolderAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_folder(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<NewFolder>,
) -> StudioResult<(StatusCode, Json<FolderAnswer>)> {
    let caller = caller?;
    let w = state
        .studio
        .clone()
        .create_workspace(caller.request(pb::CreateWorkspaceRequest {
            sku: body.sku.trim().to_string(),
            title: body.name.unwrap_or_default().trim().to_string(),
        }))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(FolderAnswer {
            folder: Folder::of(&w, None),
        }),
    ))
}

/// Query of a folder's pairs.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PairsQuery {
    pub approved: Option<bool>,
    pub archived: Option<bool>,
    pub has_result: Option<bool>,
}

/// A folder and its pairs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioFolderPairs)]
pub struct FolderPairs {
    pub folder: Folder,
    pub pairs: Vec<ImagePair>,
}

/// A folder's image pairs, oldest first.
#[utoipa::path(
    get,
    path = "/api/image-studio/folders/{sku}/pairs",
    operation_id = "studioListPairs",
    tag = "compat-image-studio",
    params(("sku" = String, Path, description = "The folder's SKU"), PairsQuery,
           ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The pairs", body = FolderPairs),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_pairs(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(sku): PathParam<String>,
    QueryParams(query): QueryParams<PairsQuery>,
) -> StudioResult<Json<FolderPairs>> {
    let caller = caller?;
    let w = workspace_by_sku(&state, &caller, &sku).await?;
    let mut pairs = Vec::new();
    let mut thumbnail = None;
    let mut token = String::new();
    loop {
        let page = state
            .studio
            .clone()
            .list_pairs(caller.request(pb::ListPairsRequest {
                workspace_id: w.id.clone(),
                approved: query.approved,
                archived: query.archived,
                has_result: query.has_result,
                page_size: 1000,
                page_token: token,
            }))
            .await?
            .into_inner();
        if pairs.is_empty() {
            thumbnail = page.pairs.first().and_then(thumbnail_of);
        }
        pairs.extend(ImagePair::all(&page.pairs, &w.sku));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(Json(FolderPairs {
        folder: Folder::of(&w, thumbnail),
        pairs,
    }))
}

/// Sources added from URLs (the JSON form of the upload route).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StudioUrlSources)]
pub struct UrlSources {
    pub sku: String,
    /// http(s) addresses of source images.
    pub urls: Vec<String>,
}

/// The upload form, for the OpenAPI document (the handler reads the multipart stream itself).
#[derive(ToSchema)]
#[schema(as = StudioUploadForm)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The folder's SKU; sent before the files. A new SKU makes the folder.
    sku: String,
    /// One part per image (JPEG, PNG or WebP).
    #[schema(content_media_type = "application/octet-stream")]
    file: Vec<Vec<u8>>,
}

/// What the upload route answers.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioAdded)]
pub struct Added {
    pub folder: Folder,
    pub pairs: Vec<ImagePair>,
}

/// The folder of `sku`, made when it does not exist yet.
async fn folder_for_upload(
    state: &AppState,
    caller: &Caller,
    sku: &str,
) -> Result<pb::Workspace, ApiError> {
    match workspace_by_sku(state, caller, sku).await {
        Err(err) if err.code == ErrorCode::NotFound => {
            let created = state
                .studio
                .clone()
                .create_workspace(caller.request(pb::CreateWorkspaceRequest {
                    sku: sku.trim().to_string(),
                    title: String::new(),
                }))
                .await;
            match created {
                Ok(w) => Ok(w.into_inner()),
                // Made by a concurrent upload meanwhile.
                Err(status)
                    if ApiError::from(status.clone()).code == ErrorCode::IdempotencyConflict =>
                {
                    workspace_by_sku(state, caller, sku).await
                }
                Err(status) => Err(status.into()),
            }
        }
        other => other,
    }
}

async fn add_pairs(
    state: &AppState,
    caller: &Caller,
    w: &pb::Workspace,
    pairs: Vec<pb::NewPair>,
) -> Result<Added, ApiError> {
    let added = state
        .studio
        .clone()
        .add_pairs(caller.request(pb::AddPairsRequest {
            workspace_id: w.id.clone(),
            pairs,
        }))
        .await?
        .into_inner();
    let pairs = ImagePair::all(&added.pairs, &w.sku);
    Ok(Added {
        folder: folder_of(state, caller, added.workspace).await?,
        pairs,
    })
}

/// Add source images to a folder: multipart files (each streamed into an upload, size-capped) or
/// JSON URLs. Each becomes a pair without a result.
#[utoipa::path(
    post,
    path = "/api/image-studio/upload",
    operation_id = "studioUpload",
    tag = "compat-image-studio",
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (UrlSources = "application/json"),
    )),
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 201, description = "Added", body = Added),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> StudioResult<(StatusCode, Json<Added>)> {
    let caller = caller?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("multipart/form-data") {
        let JsonBody(body) = JsonBody::<UrlSources>::from_request(request, &state).await?;
        if body.urls.is_empty() || body.urls.len() > MAX_UPLOAD_FILES {
            return Err(ApiError::field(
                "urls",
                format!("give 1 to {MAX_UPLOAD_FILES} image addresses"),
            )
            .into());
        }
        let w = folder_for_upload(&state, &caller, &body.sku).await?;
        let pairs = body
            .urls
            .iter()
            .map(|url| pb::NewPair {
                source: Some(pb::Source {
                    source: Some(pb::source::Source::Url(url.trim().to_string())),
                }),
                ..Default::default()
            })
            .collect();
        let added = add_pairs(&state, &caller, &w, pairs).await?;
        return Ok((StatusCode::CREATED, Json(added)));
    }
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
    let mut sku: Option<String> = None;
    let mut new_pairs = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let is_file = field.file_name().is_some() || field.name() == Some("file");
        if !is_file {
            if field.name() == Some("sku") {
                sku = Some(field.text().await.map_err(multipart_error)?);
            }
            continue;
        }
        if sku.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(ApiError::field("sku", "send the folder's SKU before the files").into());
        }
        if new_pairs.len() == MAX_UPLOAD_FILES {
            return Err(ApiError::field(
                "file",
                format!("at most {MAX_UPLOAD_FILES} files in one upload"),
            )
            .into());
        }
        let name = field.file_name().unwrap_or_default().to_string();
        let uploaded = upload_part(&state, &caller, field).await?;
        new_pairs.push(pb::NewPair {
            source: Some(pb::Source {
                source: Some(pb::source::Source::UploadId(uploaded.id)),
            }),
            result_url: String::new(),
            metadata: serde_json::json!({ "name": name }).to_string(),
        });
    }
    let Some(sku) = sku.filter(|s| !s.trim().is_empty()) else {
        return Err(ApiError::field("sku", "name the folder (its SKU)").into());
    };
    if new_pairs.is_empty() {
        return Err(ApiError::field("file", "send at least one image file").into());
    }
    let w = folder_for_upload(&state, &caller, &sku).await?;
    let added = add_pairs(&state, &caller, &w, new_pairs).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// A studio job to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioNewJob)]
pub struct NewJob {
    pub sku: String,
    pub mode: Mode,
    /// The pair of a `single` job (and of a `custom` one, optionally).
    #[serde(default)]
    pub pair_id: Option<String>,
    /// The prompt of a `custom` job, added after the active templates.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// A studio job.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioJobAnswer)]
pub struct JobAnswer {
    pub job: StudioJob,
}

/// Run a studio job over a folder's pairs; its prompt is assembled from the active prompt group and
/// the settings. Charged like any job.
#[utoipa::path(
    post,
    path = "/api/image-studio/jobs",
    operation_id = "studioSubmitJob",
    tag = "compat-image-studio",
    request_body = NewJob,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit safe")),
    responses(
        (status = 201, description = "Submitted", body = JobAnswer,
         links(("GetStudioJob" = (operation_id = "studioGetJob", parameters(("id" = "$response.body#/job/id")))))),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<NewJob>,
) -> StudioResult<(StatusCode, Json<JobAnswer>)> {
    let caller = caller?;
    let w = workspace_by_sku(&state, &caller, &body.sku).await?;
    let submitted = state
        .studio
        .clone()
        .submit_studio_job(caller.request(pb::SubmitStudioJobRequest {
            workspace_id: w.id.clone(),
            mode: body.mode.pb() as i32,
            pair_id: body.pair_id.unwrap_or_default().trim().to_string(),
            prompt: body.prompt.unwrap_or_default(),
            idempotency_key: caller.idempotency_key.clone().unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let job = StudioJob::of(&pb::StudioJob {
        job: submitted.job,
        workspace: Some(w),
        mode: body.mode.pb() as i32,
        pair_ids: submitted.pair_ids,
        prompt: submitted.prompt,
    });
    Ok((StatusCode::CREATED, Json(JobAnswer { job })))
}

/// Query of the job list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only this folder's jobs.
    pub sku: Option<String>,
    /// Only jobs in this state.
    pub status: Option<JobStatus>,
    /// 1..=100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Studio jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioJobs)]
pub struct Jobs {
    pub jobs: Vec<StudioJob>,
}

/// The user's studio jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/image-studio/jobs",
    operation_id = "studioListJobs",
    tag = "compat-image-studio",
    params(JobsQuery, ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The jobs", body = Jobs),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<JobsQuery>,
) -> StudioResult<Json<Jobs>> {
    let caller = caller?;
    let limit = match query.limit {
        None => 20,
        Some(n @ 1..=100) => n as usize,
        Some(_) => return Err(ApiError::field("limit", "between 1 and 100").into()),
    };
    let label = match query
        .sku
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(sku) => {
            let w = workspace_by_sku(&state, &caller, sku).await?;
            format!("studio_workspace={}", w.id)
        }
        None => String::new(),
    };
    let mut jobs = Vec::new();
    let mut token = String::new();
    let mut scanned = 0;
    loop {
        let page = state
            .jobs
            .clone()
            .list_jobs(
                caller.request(pb::ListJobsRequest {
                    page_size: 100,
                    page_token: token,
                    state: query
                        .status
                        .and_then(JobStatus::only_state)
                        .map_or(0, |s| s as i32),
                    label: label.clone(),
                    ..Default::default()
                }),
            )
            .await?
            .into_inner();
        scanned += page.jobs.len();
        for job in &page.jobs {
            if !job.labels.contains_key("studio_workspace") {
                continue;
            }
            if query.status == Some(JobStatus::Completed)
                && JobStatus::of_job(job.state) != JobStatus::Completed
            {
                continue;
            }
            match studio_job(&state, &caller, &job.id).await {
                Ok(found) => jobs.push(found),
                // Deleted, or its workspace gone, since the page was read.
                Err(err) if err.code == ErrorCode::NotFound => continue,
                Err(err) => return Err(err.into()),
            }
            if jobs.len() == limit {
                return Ok(Json(Jobs { jobs }));
            }
        }
        if page.next_page_token.is_empty() || scanned >= MAX_JOB_SCAN {
            return Ok(Json(Jobs { jobs }));
        }
        token = page.next_page_token;
    }
}

/// A studio job, with each image's state and the pair it works on.
#[utoipa::path(
    get,
    path = "/api/image-studio/jobs/{id}",
    operation_id = "studioGetJob",
    tag = "compat-image-studio",
    params(("id" = String, Path, description = "The job id"),
           ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The job", body = JobAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(id): PathParam<String>,
) -> StudioResult<Json<JobAnswer>> {
    let caller = caller?;
    let job = studio_job(&state, &caller, &id).await?;
    Ok(Json(JobAnswer { job }))
}

/// Cancel a studio job: images not finished are cancelled and refunded.
#[utoipa::path(
    post,
    path = "/api/image-studio/jobs/{id}/cancel",
    operation_id = "studioCancelJob",
    tag = "compat-image-studio",
    params(("id" = String, Path, description = "The job id"),
           ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The job", body = JobAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(id): PathParam<String>,
) -> StudioResult<Json<JobAnswer>> {
    let caller = caller?;
    // Only a studio job: anything else is not this API's to cancel.
    studio_job(&state, &caller, &id).await?;
    state
        .jobs
        .clone()
        .cancel_job(caller.request(pb::CancelJobRequest { job_id: id.clone() }))
        .await?;
    let job = studio_job(&state, &caller, &id).await?;
    Ok(Json(JobAnswer { job }))
}

/// One log line of a job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioLogLine)]
pub struct LogLine {
    #[schema(format = DateTime)]
    pub time: Option<String>,
    pub level: String,
    pub message: String,
    pub task_id: Option<String>,
}

/// A job's log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioLogs)]
pub struct Logs {
    pub logs: Vec<LogLine>,
}

/// A studio job's log, oldest first.
#[utoipa::path(
    get,
    path = "/api/image-studio/job-logs/{id}",
    operation_id = "studioJobLogs",
    tag = "compat-image-studio",
    params(("id" = String, Path, description = "The job id"),
           ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The log", body = Logs),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn job_logs(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    PathParam(id): PathParam<String>,
) -> StudioResult<Json<Logs>> {
    let caller = caller?;
    studio_job(&state, &caller, &id).await?;
    let mut logs = Vec::new();
    let mut token = String::new();
    loop {
        let page = state
            .jobs
            .clone()
            .list_job_logs(caller.request(pb::ListJobLogsRequest {
                job_id: id.clone(),
                page_size: 500,
                page_token: token,
            }))
            .await?
            .into_inner();
        logs.extend(page.entries.iter().map(|e| {
            let line = e.line.clone().unwrap_or_default();
            LogLine {
                time: time::to_text(e.time.as_ref()),
                level: line.level,
                message: line.message,
                task_id: non_empty(&line.task_id),
            }
        }));
        if page.next_page_token.is_empty() || logs.len() >= MAX_LOG_LINES {
            logs.truncate(MAX_LOG_LINES);
            return Ok(Json(Logs { logs }));
        }
        token = page.next_page_token;
    }
}

// ---------------------------------------------------------------------------------------------
// Settings and prompt groups

/// The user's settings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioSettings)]
pub struct Settings {
    /// For example `1024x1024`; empty: the model's default.
    pub output_size: String,
    /// Empty: the default model.
    pub model: String,
    pub additional_settings: HashMap<String, String>,
    pub active_prompt_group_id: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl Settings {
    fn of(p: pb::Preferences) -> Self {
        Self {
            output_size: p.output_size,
            model: p.model,
            additional_settings: p.settings,
            active_prompt_group_id: non_empty(&p.active_prompt_group_id),
            updated_at: time::to_text(p.updated_at.as_ref()),
        }
    }
}

/// A change of settings: the fields sent replace the current ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioSettingsChange)]
pub struct SettingsChange {
    pub output_size: Option<String>,
    pub model: Option<String>,
    pub additional_settings: Option<HashMap<String, String>>,
}

/// The user's settings.
#[utoipa::path(
    get,
    path = "/api/image-studio/settings",
    operation_id = "studioGetSettings",
    tag = "compat-image-studio",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> StudioResult<Json<Settings>> {
    let caller = caller?;
    Ok(Json(Settings::of(preferences(&state, &caller).await?)))
}

/// Change the user's settings (only the fields sent).
#[utoipa::path(
    post,
    path = "/api/image-studio/settings",
    operation_id = "studioSetSettings",
    tag = "compat-image-studio",
    request_body = SettingsChange,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_settings(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<SettingsChange>,
) -> StudioResult<Json<Settings>> {
    let caller = caller?;
    let current = preferences(&state, &caller).await?;
    let p = state
        .studio
        .clone()
        .set_preferences(caller.request(pb::SetPreferencesRequest {
            output_size: body.output_size.unwrap_or(current.output_size),
            model: body.model.unwrap_or(current.model),
            settings: body.additional_settings.unwrap_or(current.settings),
        }))
        .await?
        .into_inner();
    Ok(Json(Settings::of(p)))
}

/// A prompt template.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = StudioPromptTemplate)]
pub struct Template {
    pub name: String,
    pub content: String,
}

/// A prompt group at one version.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioPromptGroup)]
pub struct PromptGroup {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub latest_version: u32,
    pub is_active: bool,
    pub templates: Vec<Template>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

impl PromptGroup {
    fn of(g: pb::PromptGroup) -> Self {
        Self {
            id: g.id,
            name: g.name,
            version: g.version,
            latest_version: g.latest_version,
            is_active: g.active,
            templates: g
                .templates
                .into_iter()
                .map(|t| Template {
                    name: t.name,
                    content: t.text,
                })
                .collect(),
            created_at: time::to_text(g.created_at.as_ref()),
        }
    }
}

/// The prompt groups.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioPromptGroups)]
pub struct PromptGroups {
    pub groups: Vec<PromptGroup>,
}

/// A prompt group.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioPromptGroupAnswer)]
pub struct PromptGroupAnswer {
    pub group: PromptGroup,
}

/// A prompt group to save: a new name starts at version 1, a known one gets its next version.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StudioSavePromptGroup)]
pub struct SaveGroup {
    pub name: String,
    pub templates: Vec<Template>,
}

/// The group to make active.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioActiveGroup)]
pub struct ActiveGroup {
    pub group_id: String,
}

/// The user's prompt groups at their latest versions.
#[utoipa::path(
    get,
    path = "/api/image-studio/prompt-groups",
    operation_id = "studioListPromptGroups",
    tag = "compat-image-studio",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The groups", body = PromptGroups),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_prompt_groups(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
) -> StudioResult<Json<PromptGroups>> {
    let caller = caller?;
    let groups = state
        .studio
        .clone()
        .list_prompt_groups(caller.request(pb::ListPromptGroupsRequest {}))
        .await?
        .into_inner()
        .groups;
    Ok(Json(PromptGroups {
        groups: groups.into_iter().map(PromptGroup::of).collect(),
    }))
}

/// Save a prompt group (a new version of a known name).
#[utoipa::path(
    post,
    path = "/api/image-studio/prompt-groups",
    operation_id = "studioSavePromptGroup",
    tag = "compat-image-studio",
    request_body = SaveGroup,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 201, description = "Saved", body = PromptGroupAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn save_prompt_group(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<SaveGroup>,
) -> StudioResult<(StatusCode, Json<PromptGroupAnswer>)> {
    let caller = caller?;
    let group = state
        .studio
        .clone()
        .save_prompt_group(
            caller.request(pb::SavePromptGroupRequest {
                name: body.name,
                templates: body
                    .templates
                    .into_iter()
                    .map(|t| pb::PromptTemplate {
                        name: t.name,
                        text: t.content,
                    })
                    .collect(),
            }),
        )
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(PromptGroupAnswer {
            group: PromptGroup::of(group),
        }),
    ))
}

/// Make a prompt group the active one.
#[utoipa::path(
    post,
    path = "/api/image-studio/prompt-groups/active",
    operation_id = "studioSetActivePromptGroup",
    tag = "compat-image-studio",
    request_body = ActiveGroup,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The group", body = PromptGroupAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_active_prompt_group(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<ActiveGroup>,
) -> StudioResult<Json<PromptGroupAnswer>> {
    let caller = caller?;
    let group = state
        .studio
        .clone()
        .set_active_prompt_group(caller.request(pb::SetActivePromptGroupRequest {
            group_id: body.group_id,
        }))
        .await?
        .into_inner();
    Ok(Json(PromptGroupAnswer {
        group: PromptGroup::of(group),
    }))
}

// ---------------------------------------------------------------------------------------------
// Review, archive, files

fn yes() -> bool {
    true
}

/// Approve (or take back the approval of) one pair.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioReviewOne)]
pub struct ReviewOne {
    pub sku: String,
    pub pair_id: String,
    /// false takes the approval back.
    #[serde(default = "yes")]
    pub approved: bool,
}

/// Approve (or take back the approval of) several pairs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioReviewBatch)]
pub struct ReviewBatch {
    pub sku: String,
    pub pair_ids: Vec<String>,
    #[serde(default = "yes")]
    pub approved: bool,
}

/// A reviewed pair and its folder.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioReviewed)]
pub struct Reviewed {
    pub pair: ImagePair,
    pub folder: Folder,
}

/// Reviewed pairs and their folder.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StudioReviewedBatch)]
pub struct ReviewedBatch {
    pub pairs: Vec<ImagePair>,
    pub folder: Folder,
}

async fn review(
    state: &AppState,
    caller: &Caller,
    sku: &str,
    pair_ids: Vec<String>,
    approved: bool,
) -> Result<ReviewedBatch, ApiError> {
    let w = workspace_by_sku(state, caller, sku).await?;
    let reviewed = state
        .studio
        .clone()
        .review_pairs(caller.request(pb::ReviewPairsRequest {
            workspace_id: w.id.clone(),
            pair_ids,
            approved,
        }))
        .await?
        .into_inner();
    let pairs = ImagePair::all(&reviewed.pairs, &w.sku);
    Ok(ReviewedBatch {
        pairs,
        folder: folder_of(state, caller, reviewed.workspace).await?,
    })
}

/// Approve one pair with a result.
#[utoipa::path(
    post,
    path = "/api/image-studio/review/approve",
    operation_id = "studioApprove",
    tag = "compat-image-studio",
    request_body = ReviewOne,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Reviewed", body = Reviewed),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn review_one(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<ReviewOne>,
) -> StudioResult<Json<Reviewed>> {
    let caller = caller?;
    let reviewed = review(
        &state,
        &caller,
        &body.sku,
        vec![body.pair_id],
        body.approved,
    )
    .await?;
    let pair = reviewed
        .pairs
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the studio answered without the pair"))?;
    Ok(Json(Reviewed {
        pair,
        folder: reviewed.folder,
    }))
}

/// Approve several pairs with results; a refused one changes nothing.
#[utoipa::path(
    post,
    path = "/api/image-studio/review/batch",
    operation_id = "studioApproveBatch",
    tag = "compat-image-studio",
    request_body = ReviewBatch,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Reviewed", body = ReviewedBatch),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn review_batch(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<ReviewBatch>,
) -> StudioResult<Json<ReviewedBatch>> {
    let caller = caller?;
    Ok(Json(
        review(&state, &caller, &body.sku, body.pair_ids, body.approved).await?,
    ))
}

/// A folder named by its SKU.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = StudioFolderRef)]
pub struct FolderRef {
    pub sku: String,
}

/// Archive an approved folder (and its pairs).
#[utoipa::path(
    post,
    path = "/api/image-studio/archive",
    operation_id = "studioArchive",
    tag = "compat-image-studio",
    request_body = FolderRef,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Archived", body = FolderAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn archive(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<FolderRef>,
) -> StudioResult<Json<FolderAnswer>> {
    Ok(Json(
        move_folder(&state, caller?, &body.sku, Move::Archive).await?,
    ))
}

/// Where a folder moves.
#[derive(Clone, Copy)]
enum Move {
    Archive,
    Activate,
}

async fn move_folder(
    state: &AppState,
    caller: Caller,
    sku: &str,
    to: Move,
) -> Result<FolderAnswer, ApiError> {
    let w = workspace_by_sku(state, &caller, sku).await?;
    let mut studio = state.studio.clone();
    let after = match to {
        Move::Archive => {
            studio
                .archive_workspace(
                    caller.request(pb::ArchiveWorkspaceRequest { workspace_id: w.id }),
                )
                .await?
        }
        Move::Activate => {
            studio
                .activate_workspace(
                    caller.request(pb::ActivateWorkspaceRequest { workspace_id: w.id }),
                )
                .await?
        }
    }
    .into_inner();
    Ok(FolderAnswer {
        folder: folder(state, &caller, &after).await?,
    })
}

/// Work on an archived folder again (it becomes pending).
#[utoipa::path(
    post,
    path = "/api/image-studio/archive/activate",
    operation_id = "studioActivate",
    tag = "compat-image-studio",
    request_body = FolderRef,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Activated", body = FolderAnswer),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn activate(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<FolderRef>,
) -> StudioResult<Json<FolderAnswer>> {
    Ok(Json(
        move_folder(&state, caller?, &body.sku, Move::Activate).await?,
    ))
}

/// Files of chosen pairs to remove from storage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioDeleteFiles)]
pub struct DeleteFiles {
    pub sku: String,
    pub pair_ids: Vec<String>,
    /// Remove uploaded sources (URL sources are not ours and stay).
    #[serde(default)]
    pub sources: bool,
    /// Remove results (default true).
    #[serde(default = "yes")]
    pub results: bool,
    /// Remove the pairs themselves too.
    #[serde(default)]
    pub remove_pairs: bool,
}

/// What a deletion did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StudioDeleted)]
pub struct Deleted {
    /// Objects removed from storage.
    pub deleted: u32,
    /// Objects kept because another job or pair still uses them.
    pub kept: u32,
    pub pairs: Vec<ImagePair>,
    pub removed_pair_ids: Vec<String>,
    pub folder: Folder,
}

/// Remove the stored files of chosen pairs (and the pairs, with `removePairs`).
#[utoipa::path(
    post,
    path = "/api/image-studio/files/delete",
    operation_id = "studioDeleteFiles",
    tag = "compat-image-studio",
    request_body = DeleteFiles,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_files(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<DeleteFiles>,
) -> StudioResult<Json<Deleted>> {
    let caller = caller?;
    let w = workspace_by_sku(&state, &caller, &body.sku).await?;
    let done = state
        .studio
        .clone()
        .delete_files(caller.request(pb::DeleteFilesRequest {
            workspace_id: w.id.clone(),
            pair_ids: body.pair_ids,
            sources: body.sources,
            results: body.results,
            remove_pairs: body.remove_pairs,
        }))
        .await?
        .into_inner();
    let pairs = ImagePair::all(&done.pairs, &w.sku);
    Ok(Json(Deleted {
        deleted: done.objects_deleted,
        kept: done.objects_kept,
        pairs,
        removed_pair_ids: done.removed_pair_ids,
        folder: folder_of(&state, &caller, done.workspace).await?,
    }))
}
