//! Callback bodies in a client family's shape, and the batch-level callback.
//!
//! A job of family `image_editor` (seed 000) with a `callback_url` gets, on its terminal event, the
//! seed's `/result/` answer `{task_id, status, prompt, image_url, callback_url, result_image,
//! error_code, error_message, processing_time, created_at, completed_at}`, with the names, values and codes of the gateway's
//! `/result/` (the code table and the states are [`atelier_codes::family::image_editor`]), and
//! `result_image` the base64 of the output's bytes as the seed sent it. Jobs of other families get
//! Atelier's event body (see [`crate::webhooks`]).
//!
//! A batch (SubmitBatch) with a `callback_url` gets one delivery once every job of it is terminal,
//! under the event id `batch_<account id>:<batch id>`, so two jobs finishing at once, or two replicas,
//! queue it once. For family `image_editor` its body is the seed's `/batch_result/` answer
//! `{batch_id, total_count, completed_count, tasks: [...]}` with every task in the `/result/` shape;
//! there `result_image` is a link (100 inlined images would make a body of hundreds of megabytes).
//! Other batches get `{id, type: "batch.finished", created_at, batch_id, account, data: {batch_id,
//! family, total, jobs}}` with every job as in a terminal event.
//!
//! Outbox rows stay small and links stay fresh: the stored body holds a marker
//! `{"$atelier_object": {"key", "content_type", "as": "base64" | "link"}}` where an image goes,
//! and [`expand`] replaces it as the delivery is sent, by reading the object from storage or by
//! minting a link.

use atelier_codes::family::image_editor;
use atelier_proto::v1 as pb;
use atelier_storage::{Links, StorageError};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The marker's field name.
const MARKER: &str = "$atelier_object";
/// Largest object inlined into a callback body.
const MAX_INLINE_BYTES: u64 = 32 * 1024 * 1024;

/// How an object appears once the body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectAs {
    /// The object's bytes in base64.
    Base64,
    /// A freshly minted link.
    Link,
}

/// The event id of a batch's one callback.
pub fn batch_event_id(account_id: &str, batch_id: &str) -> String {
    format!("batch_{account_id}:{batch_id}")
}

/// Seed 000's `/result/` shape of a job, its first output as a marker.
pub fn image_editor_result(job: &pb::Job, image: ObjectAs) -> Value {
    let status = image_editor::status_of(job);
    let (error_code, error_message) = image_editor::error_of(job);
    let output = job.tasks.iter().flat_map(|t| t.outputs.iter()).next();
    let result_image = match output {
        Some(o) if status == image_editor::Status::Success => marker(o, image),
        _ => Value::Null,
    };
    json!({
        "task_id": job.id,
        "status": status.as_str(),
        "prompt": image_editor::prompt_of(job),
        "image_url": image_editor::image_url_of(job),
        "callback_url": image_editor::callback_url_of(job),
        "result_image": result_image,
        "error_code": error_code,
        "error_message": error_message,
        "processing_time": image_editor::processing_time(job),
        "created_at": time_text(job.created_at.as_ref()),
        "completed_at": time_text(job.finished_at.as_ref()),
    })
}

/// Seed 000's `/batch_result/` shape of a finished batch, `result_image` as links.
pub fn image_editor_batch(batch_id: &str, jobs: &[pb::Job]) -> Value {
    let tasks: Vec<Value> = jobs
        .iter()
        .map(|j| image_editor_result(j, ObjectAs::Link))
        .collect();
    let completed = jobs
        .iter()
        .filter(|j| image_editor::status_of(j) != image_editor::Status::Processing)
        .count();
    json!({
        "batch_id": batch_id,
        "total_count": jobs.len(),
        "completed_count": completed,
        "tasks": tasks,
    })
}

fn marker(output: &pb::Output, image: ObjectAs) -> Value {
    json!({ MARKER: {
        "key": output.key,
        "content_type": output.content_type,
        "as": match image { ObjectAs::Base64 => "base64", ObjectAs::Link => "link" },
    }})
}

/// RFC 3339 text (UTC, milliseconds), as the gateway writes times.
fn time_text(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The body with every marker replaced: base64 of the object's bytes, or a fresh link. An object
/// that is gone (deleted with its job) becomes `null`; a storage failure is an error, so the
/// delivery is tried again later.
pub async fn expand(links: &Links, body: &str) -> Result<String, StorageError> {
    if !body.contains(MARKER) {
        return Ok(body.to_owned());
    }
    let Ok(mut value) = serde_json::from_str::<Value>(body) else {
        return Ok(body.to_owned());
    };
    expand_value(links, &mut value).await?;
    Ok(value.to_string())
}

async fn expand_value(links: &Links, value: &mut Value) -> Result<(), StorageError> {
    // Depth-first without recursion in an async fn: a stack of the values still to look at.
    let mut stack = vec![value];
    while let Some(current) = stack.pop() {
        if let Some(spec) = current.as_object().and_then(marker_of) {
            *current = object(links, &spec).await?;
            continue;
        }
        match current {
            Value::Object(map) => stack.extend(map.values_mut()),
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    Ok(())
}

struct Spec {
    key: String,
    content_type: String,
    base64: bool,
}

fn marker_of(map: &Map<String, Value>) -> Option<Spec> {
    if map.len() != 1 {
        return None;
    }
    let spec = map.get(MARKER)?.as_object()?;
    let text = |name: &str| {
        spec.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Spec {
        key: text("key"),
        content_type: text("content_type"),
        base64: text("as") == "base64",
    })
}

async fn object(links: &Links, spec: &Spec) -> Result<Value, StorageError> {
    if spec.key.is_empty() {
        return Ok(Value::Null);
    }
    if !spec.base64 {
        return Ok(Value::String(
            links.url(&spec.key, &spec.content_type).await,
        ));
    }
    match links.storage().get(&spec.key, MAX_INLINE_BYTES).await {
        Ok(bytes) => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        )),
        Err(StorageError::NotFound(_) | StorageError::InvalidKey(_)) => Ok(Value::Null),
        Err(e @ StorageError::TooLarge { .. }) => {
            tracing::warn!(key = %spec.key, error = %e, "result too large to inline; sending its link");
            Ok(Value::String(
                links.url(&spec.key, &spec.content_type).await,
            ))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_job() -> pb::Job {
        pb::Job {
            id: "0190-job".into(),
            state: pb::JobState::Succeeded as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            finished_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_003,
                nanos: 500_000_000,
            }),
            tasks: vec![pb::Task {
                started_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 0,
                }),
                outputs: vec![pb::Output {
                    key: "t/x/out.png".into(),
                    content_type: "image/png".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn seed_result_shape_with_a_marker() {
        let body = image_editor_result(&finished_job(), ObjectAs::Base64);
        assert_eq!(body["task_id"], "0190-job");
        assert_eq!(body["status"], "success");
        assert_eq!(body["processing_time"], 2.5);
        assert_eq!(body["created_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["error_code"], Value::Null);
        let spec = body["result_image"]
            .as_object()
            .and_then(marker_of)
            .expect("a marker");
        assert_eq!(
            (spec.key.as_str(), spec.base64),
            ("t/x/out.png", true),
            "{body}"
        );
        let batch = image_editor_batch("b1", &[finished_job(), pb::Job::default()]);
        assert_eq!(batch["total_count"], 2);
        assert_eq!(batch["completed_count"], 1);
        assert_eq!(batch["tasks"][1]["status"], "processing");
        assert_eq!(batch["tasks"][0]["result_image"][MARKER]["as"], "link");
    }
}
