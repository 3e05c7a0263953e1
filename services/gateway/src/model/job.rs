//! Jobs, tasks and outputs as REST JSON, and the body of `POST /v1/jobs`.

use std::collections::HashMap;

use atelier_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::enums::{self, ImageFormat, JobKind, JobState, TaskState};
use super::{params, time};
use crate::error::ApiError;

/// Where a source image comes from: exactly one of `url` and `upload_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Source {
    /// An http(s) address the processor downloads.
    pub url: Option<String>,
    /// The id returned by `POST /v1/uploads`.
    pub upload_id: Option<String>,
}

impl Source {
    fn to_pb(&self, field: &str) -> Result<pb::Source, ApiError> {
        let source = match (&self.url, &self.upload_id) {
            (Some(url), None) => pb::source::Source::Url(url.clone()),
            (None, Some(id)) => pb::source::Source::UploadId(id.clone()),
            _ => {
                return Err(ApiError::field(
                    field,
                    "give exactly one of url and upload_id",
                ))
            }
        };
        Ok(pb::Source {
            source: Some(source),
        })
    }

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

/// The body of `POST /v1/jobs`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "kind": "transform",
    "params": {"resize": {"width": 320, "fit": "inside"}, "format": "webp"},
    "sources": [{"url": "https://example.com/photo.jpg"}],
    "labels": {"order": "1042"}
}))]
pub struct SubmitJob {
    pub kind: JobKind,
    /// The parameters of `kind` (see the *Params schemas); absent means all defaults.
    #[serde(default)]
    #[schema(schema_with = params::params_schema)]
    pub params: Option<serde_json::Value>,
    /// 0..=100 sources; `generate` takes none.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Same key and request within 24 h returns the original job; also accepted as the
    /// `Idempotency-Key` header.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Receives signed webhook deliveries of this job's terminal events.
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// RFC 3339 deadline for the whole job.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
}

impl SubmitJob {
    /// The gRPC request; `header_key` is the `Idempotency-Key` header, which must agree with the body.
    pub fn into_pb(self, header_key: Option<String>) -> Result<pb::SubmitJobRequest, ApiError> {
        let idempotency_key = match (header_key, self.idempotency_key) {
            (Some(h), Some(b)) if h != b => {
                return Err(ApiError::field(
                    "idempotency_key",
                    "differs from the Idempotency-Key header",
                ))
            }
            (h, b) => h.or(b).unwrap_or_default(),
        };
        let sources = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.to_pb(&format!("sources[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let deadline = self
            .deadline
            .as_deref()
            .map(|d| time::parse("deadline", d))
            .transpose()?;
        Ok(pb::SubmitJobRequest {
            params: Some(params::to_pb(self.kind, self.params)?),
            sources,
            idempotency_key,
            callback_url: self.callback_url.unwrap_or_default(),
            labels: self.labels,
            deadline,
            // Atelier's own API: no client family.
            family: String::new(),
        })
    }
}

/// A job: one request of a kind over 0..=100 sources, one task per source.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    /// The account's external id.
    pub account: String,
    pub kind: JobKind,
    pub state: JobState,
    #[schema(schema_with = params::params_schema)]
    pub params: serde_json::Value,
    pub tasks: Vec<Task>,
    pub labels: HashMap<String, String>,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    /// Quota units charged at submit.
    pub cost: u64,
    /// Quota units refunded so far.
    pub refunded: u64,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(format = DateTime)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Task {
    pub id: String,
    /// Position of the task's source in the request, from 0.
    pub index: u32,
    pub source: Source,
    pub state: TaskState,
    pub attempts: u32,
    pub stage: Option<String>,
    pub percent: u32,
    pub outputs: Vec<Output>,
    pub failure: Option<Failure>,
    pub from_cache: bool,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Set once the processor has read the source.
    pub source_info: Option<SourceInfo>,
}

/// What the processor read from a source.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SourceInfo {
    pub sha256: String,
    pub format: Option<ImageFormat>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// One stored image a task produced.
#[derive(Clone, Debug, Serialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MattingInfo {
    /// `classical`, `model` (a segmentation model in the processor) or `remote` (a matting service).
    pub method: String,
    /// The model or service; empty for the classical method.
    pub model: String,
    /// The method's own rating of the cut-out, 0..1.
    pub confidence: f32,
}

/// A preview of an output, longest side 256 px.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Thumbnail {
    pub url: String,
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Why a task or job failed: the SPEC §5 code, its reason and a message.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Failure {
    pub code: u32,
    pub reason: String,
    pub message: String,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
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
    type Error = ApiError;

    fn try_from(t: &pb::Task) -> Result<Self, ApiError> {
        Ok(Self {
            id: t.id.clone(),
            index: t.index,
            source: Source::from_pb(t.source.as_ref()),
            state: enums::task_state(t.state)?,
            attempts: t.attempts,
            stage: some_text(&t.stage),
            percent: t.percent,
            outputs: t.outputs.iter().map(Output::from_pb).collect(),
            failure: t.failure.as_ref().map(Failure::from_pb),
            from_cache: t.from_cache,
            started_at: time::to_text(t.started_at.as_ref()),
            finished_at: time::to_text(t.finished_at.as_ref()),
            source_info: t.source_info.as_ref().map(SourceInfo::from_pb),
        })
    }
}

impl TryFrom<&pb::Job> for Job {
    type Error = ApiError;

    fn try_from(j: &pb::Job) -> Result<Self, ApiError> {
        Ok(Self {
            id: j.id.clone(),
            account: j.account.clone(),
            kind: enums::job_kind(j.kind)?,
            state: enums::job_state(j.state)?,
            params: params::from_pb(j.params.as_ref()),
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
            created_at: time::to_text(j.created_at.as_ref()),
            updated_at: time::to_text(j.updated_at.as_ref()),
            finished_at: time::to_text(j.finished_at.as_ref()),
            deadline: time::to_text(j.deadline.as_ref()),
            queue_position: j.queue_position,
            estimated_seconds: j.estimated_seconds,
            last_sequence: j.last_sequence,
            batch_id: some_text(&j.batch_id),
            family: some_text(&j.family),
        })
    }
}

impl TryFrom<&pb::ListJobsResponse> for JobList {
    type Error = ApiError;

    fn try_from(page: &pb::ListJobsResponse) -> Result<Self, ApiError> {
        Ok(Self {
            jobs: page
                .jobs
                .iter()
                .map(Job::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: some_text(&page.next_page_token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> SubmitJob {
        serde_json::from_value(json).expect("body")
    }

    #[test]
    fn header_and_body_keys_must_agree() {
        let b = body(serde_json::json!({"kind": "transform", "idempotency_key": "a"}));
        assert_eq!(b.clone().into_pb(None).expect("ok").idempotency_key, "a");
        assert_eq!(
            b.clone()
                .into_pb(Some("a".into()))
                .expect("ok")
                .idempotency_key,
            "a"
        );
        assert!(b.into_pb(Some("b".into())).is_err());
    }

    #[test]
    fn a_source_needs_exactly_one_origin() {
        let b = body(
            serde_json::json!({"kind": "transform", "sources": [{"url": "https://x/y.jpg"}, {}]}),
        );
        let err = b.into_pb(None).expect_err("empty source");
        assert_eq!(err.details[0].field, "sources[1]");
    }
}
