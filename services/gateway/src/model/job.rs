//! Jobs, tasks and outputs as REST JSON (the views of `atelier_views`, which webhooks and the CLI
//! show too), and the body of `POST /v1/jobs`.

use std::collections::HashMap;

use atelier_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use atelier_views::job::{
    Failure, Job, MattingInfo, Output, Source, SourceInfo, Task, Thumbnail,
};

use super::enums::JobKind;
use super::{params, time};
use crate::error::ApiError;

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
            .map(|(i, s)| source_to_pb(s, &format!("sources[{i}]")))
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

/// A page of jobs, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// The protobuf source of a request's `field`: exactly one of `url` and `upload_id`.
fn source_to_pb(source: &Source, field: &str) -> Result<pb::Source, ApiError> {
    let source = match (&source.url, &source.upload_id) {
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

impl TryFrom<&pb::ListJobsResponse> for JobList {
    type Error = ApiError;

    fn try_from(page: &pb::ListJobsResponse) -> Result<Self, ApiError> {
        Ok(Self {
            jobs: page
                .jobs
                .iter()
                .map(Job::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: (!page.next_page_token.is_empty())
                .then(|| page.next_page_token.clone()),
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
