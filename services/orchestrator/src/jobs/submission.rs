//! SubmitJob requests checked once at the edge into a [`Submission`]; the rest of the orchestrator
//! never sees raw protobuf optionals.

use std::collections::BTreeMap;

use atelier_codes::family::Family;
use atelier_codes::FieldViolation;
use atelier_proto::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::domain::{from_timestamp, Kind};
use crate::error::ApiError;

/// Most sources one job may carry.
pub const MAX_SOURCES: usize = 100;
const MAX_URL_LEN: usize = 2048;
const MAX_LABELS: usize = 32;
const MAX_LABEL_LEN: usize = 256;
const MAX_KEY_LEN: usize = 255;
const MAX_SIDE: u32 = 16_384;

/// Where a task's source comes from, before uploads are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Url(String),
    Upload(String),
}

/// A valid SubmitJob request.
#[derive(Clone, Debug)]
pub struct Submission {
    pub kind: Kind,
    pub params: pb::JobParams,
    pub sources: Vec<SourceSpec>,
    pub labels: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    pub deadline_ms: Option<i64>,
    /// The client family it came through; `None` for Atelier's own API.
    pub family: Option<Family>,
}

impl Submission {
    /// Fingerprint of everything but the idempotency key, to tell a replay from a different request.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.params.encode_to_vec());
        for s in &self.sources {
            match s {
                SourceSpec::Url(u) => h.update(format!("url:{}:{u}\n", u.len())),
                SourceSpec::Upload(u) => h.update(format!("upload:{u}\n")),
            }
        }
        for (k, v) in &self.labels {
            h.update(format!("label:{}:{k}={v}\n", k.len()));
        }
        h.update(format!(
            "callback:{}\n",
            self.callback_url.as_deref().unwrap_or_default()
        ));
        h.update(format!(
            "deadline:{}\n",
            self.deadline_ms.unwrap_or_default()
        ));
        h.update(format!(
            "family:{}\n",
            self.family.map_or("", Family::as_str)
        ));
        hex::encode(h.finalize())
    }
}

impl TryFrom<pb::SubmitJobRequest> for Submission {
    type Error = ApiError;

    fn try_from(req: pb::SubmitJobRequest) -> Result<Self, ApiError> {
        let mut bad = Vec::new();
        let params = req.params.unwrap_or_default();
        let kind = match &params.params {
            Some(p) => Some(Kind::of(p)),
            None => {
                bad.push(FieldViolation::new(
                    "params",
                    "set exactly one of transform, basic_clean, edit, generate, pose_set",
                ));
                None
            }
        };
        match &params.params {
            Some(pb::job_params::Params::Transform(t)) => check_transform(t, &mut bad),
            Some(pb::job_params::Params::BasicClean(c))
                if pb::CleanTemplate::try_from(c.template).is_err() =>
            {
                bad.push(FieldViolation::new(
                    "params.basic_clean.template",
                    "unknown template",
                ));
            }
            _ => {}
        }
        let needs_source = !matches!(kind, Some(Kind::Generate));
        if needs_source && req.sources.is_empty() {
            bad.push(FieldViolation::new("sources", "give at least one source"));
        }
        if !needs_source && !req.sources.is_empty() {
            bad.push(FieldViolation::new(
                "sources",
                "generate jobs take no sources",
            ));
        }
        if req.sources.len() > MAX_SOURCES {
            bad.push(FieldViolation::new(
                "sources",
                format!(
                    "at most {MAX_SOURCES} sources per job, got {}",
                    req.sources.len()
                ),
            ));
        }
        let mut sources = Vec::new();
        for (i, s) in req.sources.iter().take(MAX_SOURCES).enumerate() {
            let field = format!("sources[{i}]");
            match &s.source {
                Some(pb::source::Source::Url(u)) => match check_url(u) {
                    Ok(()) => sources.push(SourceSpec::Url(u.clone())),
                    Err(why) => bad.push(FieldViolation::new(format!("{field}.url"), why)),
                },
                Some(pb::source::Source::UploadId(id)) => match uuid::Uuid::parse_str(id) {
                    Ok(_) => sources.push(SourceSpec::Upload(id.clone())),
                    Err(_) => bad.push(FieldViolation::new(
                        format!("{field}.upload_id"),
                        "not an upload id",
                    )),
                },
                None => bad.push(FieldViolation::new(field, "set url or upload_id")),
            }
        }
        if req.labels.len() > MAX_LABELS {
            bad.push(FieldViolation::new(
                "labels",
                format!("at most {MAX_LABELS} labels"),
            ));
        }
        for (k, v) in &req.labels {
            if k.is_empty()
                || k.len() > MAX_LABEL_LEN
                || v.len() > MAX_LABEL_LEN
                || k.chars().chain(v.chars()).any(char::is_control)
            {
                bad.push(FieldViolation::new("labels", format!("keys 1..={MAX_LABEL_LEN} bytes, values up to {MAX_LABEL_LEN}, no control characters")));
                break;
            }
        }
        let idempotency_key = non_empty(req.idempotency_key);
        if idempotency_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_KEY_LEN || k.chars().any(char::is_control))
        {
            bad.push(FieldViolation::new(
                "idempotency_key",
                format!("at most {MAX_KEY_LEN} bytes, no control characters"),
            ));
        }
        let callback_url = checked_callback(req.callback_url, &mut bad);
        let deadline_ms = req.deadline.as_ref().map(from_timestamp);
        if deadline_ms.is_some_and(|d| d <= crate::domain::now_ms()) {
            bad.push(FieldViolation::new("deadline", "must be in the future"));
        }
        let family = checked_family(&req.family, &mut bad);
        match kind {
            Some(kind) if bad.is_empty() => Ok(Self {
                kind,
                params,
                sources,
                labels: req.labels.into_iter().collect(),
                idempotency_key,
                callback_url,
                deadline_ms,
                family,
            }),
            _ => Err(ApiError::BadRequest(bad)),
        }
    }
}

/// Most jobs one SubmitBatch may carry.
pub const MAX_BATCH_JOBS: usize = 100;
const MAX_BATCH_ID_LEN: usize = 128;

/// A SubmitBatch request with its own fields checked; the jobs are checked one by one after.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    pub jobs: Vec<pb::SubmitJobRequest>,
    /// The id the caller chose; minted when `None`.
    pub id: Option<String>,
    pub callback_url: Option<String>,
    pub family: Option<Family>,
}

impl TryFrom<pb::SubmitBatchRequest> for BatchRequest {
    type Error = ApiError;

    fn try_from(req: pb::SubmitBatchRequest) -> Result<Self, ApiError> {
        let mut bad = Vec::new();
        if req.jobs.is_empty() || req.jobs.len() > MAX_BATCH_JOBS {
            bad.push(FieldViolation::new(
                "jobs",
                format!("give 1..={MAX_BATCH_JOBS} jobs, got {}", req.jobs.len()),
            ));
        }
        let id = non_empty(req.batch_id);
        if id.as_ref().is_some_and(|id| {
            id.len() > MAX_BATCH_ID_LEN
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        }) {
            bad.push(FieldViolation::new(
                "batch_id",
                format!("up to {MAX_BATCH_ID_LEN} letters, digits, '-', '_', '.' or ':'"),
            ));
        }
        let callback_url = checked_callback(req.callback_url, &mut bad);
        let family = checked_family(&req.family, &mut bad);
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        Ok(Self {
            jobs: req.jobs,
            id,
            callback_url,
            family,
        })
    }
}

/// The client family named, if any; an unknown name is a violation.
fn checked_family(name: &str, bad: &mut Vec<FieldViolation>) -> Option<Family> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let family = Family::parse(name);
    if family.is_none() {
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        bad.push(FieldViolation::new(
            "family",
            format!("one of {}, or empty", names.join(", ")),
        ));
    }
    family
}

/// The callback URL asked for, if any; a malformed one is a violation.
fn checked_callback(url: String, bad: &mut Vec<FieldViolation>) -> Option<String> {
    let url = non_empty(url)?;
    if let Err(why) = check_url(&url) {
        bad.push(FieldViolation::new("callback_url", why));
    }
    Some(url)
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Checks a source address: http(s), at most the longest URL, no spaces or control characters.
pub(crate) fn check_url(u: &str) -> Result<(), String> {
    if u.len() > MAX_URL_LEN {
        return Err(format!("at most {MAX_URL_LEN} bytes"));
    }
    let lower = u.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("must be an http(s) URL".into());
    }
    let rest = &u[u.find("://").map_or(0, |i| i + 3)..];
    if rest.is_empty() || rest.starts_with('/') || u.chars().any(|c| c.is_control() || c == ' ') {
        return Err("not a valid URL".into());
    }
    Ok(())
}

fn check_transform(t: &pb::TransformParams, bad: &mut Vec<FieldViolation>) {
    if !matches!(t.rotate, 0 | 90 | 180 | 270) {
        bad.push(FieldViolation::new(
            "params.transform.rotate",
            "one of 0, 90, 180, 270",
        ));
    }
    if t.quality > 100 {
        bad.push(FieldViolation::new(
            "params.transform.quality",
            "1..=100, or 0 for the default",
        ));
    }
    if pb::ImageFormat::try_from(t.format).is_err() {
        bad.push(FieldViolation::new(
            "params.transform.format",
            "unknown format",
        ));
    }
    if t.lossless && t.format == pb::ImageFormat::Jpeg as i32 {
        bad.push(FieldViolation::new(
            "params.transform.lossless",
            "JPEG has no lossless mode; use format webp or png",
        ));
    }
    if let Some(r) = &t.resize {
        if r.width == 0 && r.height == 0 {
            bad.push(FieldViolation::new(
                "params.transform.resize",
                "give a width, a height or both",
            ));
        }
        if r.width > MAX_SIDE || r.height > MAX_SIDE {
            bad.push(FieldViolation::new(
                "params.transform.resize",
                format!("sides up to {MAX_SIDE}"),
            ));
        }
        if pb::Fit::try_from(r.fit).is_err() {
            bad.push(FieldViolation::new(
                "params.transform.resize.fit",
                "unknown fit",
            ));
        }
    }
    if let Some(c) = &t.crop {
        if c.width == 0 || c.height == 0 {
            bad.push(FieldViolation::new(
                "params.transform.crop",
                "width and height must be positive",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transform_request(sources: usize) -> pb::SubmitJobRequest {
        pb::SubmitJobRequest {
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::Transform(
                    pb::TransformParams::default(),
                )),
            }),
            sources: (0..sources)
                .map(|i| pb::Source {
                    source: Some(pb::source::Source::Url(format!(
                        "https://example.com/{i}.jpg"
                    ))),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::BadRequest(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_batch_of_one_hundred() {
        let s = Submission::try_from(transform_request(100)).expect("valid");
        assert_eq!(s.sources.len(), 100);
        assert_eq!(s.kind, Kind::Transform);
    }

    #[test]
    fn refuses_missing_and_too_many_sources() {
        assert_eq!(
            fields(Submission::try_from(transform_request(0)).unwrap_err()),
            ["sources"]
        );
        assert!(
            fields(Submission::try_from(transform_request(101)).unwrap_err())
                .contains(&"sources".to_string())
        );
    }

    #[test]
    fn refuses_bad_fields_together() {
        let mut req = transform_request(1);
        req.sources.push(pb::Source {
            source: Some(pb::source::Source::Url("file:///etc/passwd".into())),
        });
        req.params = Some(pb::JobParams {
            params: Some(pb::job_params::Params::Transform(pb::TransformParams {
                rotate: 45,
                quality: 101,
                ..Default::default()
            })),
        });
        let f = fields(Submission::try_from(req).unwrap_err());
        assert!(f.contains(&"sources[1].url".to_string()));
        assert!(f.contains(&"params.transform.rotate".to_string()));
        assert!(f.contains(&"params.transform.quality".to_string()));
    }

    #[test]
    fn lossless_jpeg_is_refused_and_lossless_webp_accepted() {
        let with = |format: pb::ImageFormat| {
            let mut req = transform_request(1);
            req.params = Some(pb::JobParams {
                params: Some(pb::job_params::Params::Transform(pb::TransformParams {
                    format: format as i32,
                    lossless: true,
                    ..Default::default()
                })),
            });
            Submission::try_from(req)
        };
        assert_eq!(
            fields(with(pb::ImageFormat::Jpeg).unwrap_err()),
            ["params.transform.lossless"]
        );
        for ok in [
            pb::ImageFormat::Webp,
            pb::ImageFormat::Png,
            pb::ImageFormat::Unspecified,
        ] {
            assert!(with(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn batches_hold_one_to_one_hundred_jobs_with_a_plain_id() {
        let batch = |jobs: usize, id: &str| {
            BatchRequest::try_from(pb::SubmitBatchRequest {
                jobs: (0..jobs).map(|_| transform_request(1)).collect(),
                batch_id: id.into(),
                ..Default::default()
            })
        };
        assert!(batch(1, "").is_ok_and(|b| b.id.is_none()));
        assert!(batch(100, "order-17").is_ok_and(|b| b.id.as_deref() == Some("order-17")));
        assert_eq!(fields(batch(0, "").unwrap_err()), ["jobs"]);
        assert_eq!(fields(batch(101, "").unwrap_err()), ["jobs"]);
        assert_eq!(fields(batch(1, "a b").unwrap_err()), ["batch_id"]);
    }

    #[test]
    fn family_is_checked() {
        let mut req = transform_request(1);
        req.family = "task_api".into();
        assert_eq!(
            Submission::try_from(req.clone()).expect("valid").family,
            Some(Family::TaskApi)
        );
        req.family = "django".into();
        assert_eq!(fields(Submission::try_from(req).unwrap_err()), ["family"]);
    }

    #[test]
    fn fingerprint_ignores_label_order_but_not_content() {
        let mut a = transform_request(2);
        a.labels.insert("a".into(), "1".into());
        a.labels.insert("b".into(), "2".into());
        let fa = Submission::try_from(a.clone())
            .expect("valid")
            .fingerprint();
        let fb = Submission::try_from(a.clone())
            .expect("valid")
            .fingerprint();
        assert_eq!(fa, fb);
        a.labels.insert("b".into(), "3".into());
        assert_ne!(fa, Submission::try_from(a).expect("valid").fingerprint());
    }
}
