//! A job, its tasks and their outputs as JSON.

use std::collections::HashMap;

use atelier_proto::v1 as pb;
use atelier_types::{ImageFormat, JobState, Kind as JobKind, TaskState};
use serde::{Deserialize, Serialize};

use crate::Unknown;

/// Where a source image comes from: exactly one of `url` and `upload_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Source {
    /// An http(s) address the processor downloads.
    pub url: Option<String>,
    /// The id returned by `POST /v1/uploads`.
    pub upload_id: Option<String>,
}

impl Source {
    /// The JSON source of a protobuf one.
    pub fn from_pb(source: Option<&pb::Source>) -> Self {
        match source.and_then(|s| s.source.as_ref()) {
            Some(pb::source::Source::Url(url)) => Self {
                url: Some(url.clone()),
                upload_id: None,
            },
            Some(pb::source::Source::UploadId(id)) => Self {
                url: None,
                upload_id: Some(id.clone()),
            },
            None => Self::default(),
        }
    }
}

/// A job: one request of a kind over 0..=100 sources, one task per source.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: String,
    /// The account's external id.
    pub account: String,
    pub kind: JobKind,
    pub state: JobState,
    #[cfg_attr(feature = "utoipa", schema(schema_with = crate::params::params_schema))]
    pub params: serde_json::Value,
    pub tasks: Vec<Task>,
    pub labels: HashMap<String, String>,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    /// Quota units charged at submit.
    pub cost: u64,
    /// Quota units refunded so far.
    pub refunded: u64,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub created_at: Option<String>,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub updated_at: Option<String>,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub finished_at: Option<String>,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub deadline: Option<String>,
    /// While queued: tasks of other jobs ahead of this one.
    pub queue_position: u32,
    pub estimated_seconds: u32,
    /// The last event sequence: resume `/events` after it with `Last-Event-ID`.
    pub last_sequence: u64,
    /// The batch it was submitted in (seed 000's `/batch_submit/`).
    pub batch_id: Option<String>,
    /// The client family it came through (`image_editor`, `task_api`, `generator`, `image_edit`);
    /// null for this API.
    pub family: Option<String>,
}

/// One source's work within a job.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: String,
    /// Position of the task's source in the request, from 0.
    pub index: u32,
    /// Null for a task of a kind that reads no source (`generate`).
    pub source: Option<Source>,
    pub state: TaskState,
    pub attempts: u32,
    pub stage: Option<String>,
    pub percent: u32,
    pub outputs: Vec<Output>,
    pub failure: Option<Failure>,
    pub from_cache: bool,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub started_at: Option<String>,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub finished_at: Option<String>,
    /// Set once the processor has read the source.
    pub source_info: Option<SourceInfo>,
}

/// What the processor read from a source.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct SourceInfo {
    pub sha256: String,
    pub format: Option<ImageFormat>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// One stored image a task produced.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Output {
    /// File name within the task, for example `matting.png`.
    pub name: String,
    pub url: String,
    /// Storage key.
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
    pub thumbnail: Option<Thumbnail>,
    pub from_cache: bool,
    /// basic_clean outputs: how the subject was cut out.
    pub matting: Option<MattingInfo>,
}

/// How an output's subject was cut out.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct MattingInfo {
    /// `classical`, `model` (a segmentation model in the processor) or `remote` (a matting service).
    pub method: String,
    /// The model or service; empty for the classical method.
    pub model: String,
    /// The method's own rating of the cut-out, 0..1.
    pub confidence: f32,
}

/// A preview of an output, longest side 256 px.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Thumbnail {
    pub url: String,
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Why a task or job failed: the SPEC §5 code, its reason and a message.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Failure {
    pub code: u32,
    pub reason: String,
    pub message: String,
}

fn some_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

impl Failure {
    /// The JSON failure of a protobuf one.
    pub fn from_pb(f: &pb::Failure) -> Self {
        Self {
            code: f.code,
            reason: f.reason.clone(),
            message: f.message.clone(),
        }
    }
}

impl Output {
    /// The JSON output of a protobuf one.
    pub fn from_pb(o: &pb::Output) -> Self {
        Self {
            name: o.name.clone(),
            url: o.url.clone(),
            key: o.key.clone(),
            content_type: o.content_type.clone(),
            width: o.width,
            height: o.height,
            bytes: o.bytes,
            sha256: o.sha256.clone(),
            thumbnail: o.thumbnail.as_ref().map(|t| Thumbnail {
                url: t.url.clone(),
                key: t.key.clone(),
                content_type: t.content_type.clone(),
                width: t.width,
                height: t.height,
                bytes: t.bytes,
            }),
            from_cache: o.from_cache,
            matting: o.matting.as_ref().map(|m| MattingInfo {
                method: m.method.clone(),
                model: m.model.clone(),
                confidence: m.confidence,
            }),
        }
    }
}

impl SourceInfo {
    /// The JSON source info of a protobuf one.
    pub fn from_pb(s: &pb::SourceInfo) -> Self {
        Self {
            sha256: s.sha256.clone(),
            format: ImageFormat::from_number(s.format),
            width: s.width,
            height: s.height,
            bytes: s.bytes,
        }
    }
}

impl TryFrom<&pb::Task> for Task {
    type Error = Unknown;

    fn try_from(t: &pb::Task) -> Result<Self, Unknown> {
        Ok(Self {
            id: t.id.clone(),
            index: t.index,
            source: t
                .source
                .as_ref()
                .filter(|s| s.source.is_some())
                .map(|s| Source::from_pb(Some(s))),
            state: Unknown::of("task state", t.state, TaskState::from_number)?,
            attempts: t.attempts,
            stage: some_text(&t.stage),
            percent: t.percent,
            outputs: t.outputs.iter().map(Output::from_pb).collect(),
            failure: t.failure.as_ref().map(Failure::from_pb),
            from_cache: t.from_cache,
            started_at: crate::time::to_text(t.started_at.as_ref()),
            finished_at: crate::time::to_text(t.finished_at.as_ref()),
            source_info: t.source_info.as_ref().map(SourceInfo::from_pb),
        })
    }
}

impl TryFrom<&pb::Job> for Job {
    type Error = Unknown;

    fn try_from(j: &pb::Job) -> Result<Self, Unknown> {
        Ok(Self {
            id: j.id.clone(),
            account: j.account.clone(),
            kind: Unknown::of("job kind", j.kind, JobKind::from_number)?,
            state: Unknown::of("job state", j.state, JobState::from_number)?,
            params: crate::params::from_pb(j.params.as_ref()),
            tasks: j
                .tasks
                .iter()
                .map(Task::try_from)
                .collect::<Result<_, _>>()?,
            labels: j.labels.clone(),
            idempotency_key: some_text(&j.idempotency_key),
            callback_url: some_text(&j.callback_url),
            cost: j.cost,
            refunded: j.refunded,
            created_at: crate::time::to_text(j.created_at.as_ref()),
            updated_at: crate::time::to_text(j.updated_at.as_ref()),
            finished_at: crate::time::to_text(j.finished_at.as_ref()),
            deadline: crate::time::to_text(j.deadline.as_ref()),
            queue_position: j.queue_position,
            estimated_seconds: j.estimated_seconds,
            last_sequence: j.last_sequence,
            batch_id: some_text(&j.batch_id),
            family: some_text(&j.family),
        })
    }
}
