//! JSON for `--json`. A job, its tasks, outputs and events are the views the REST API answers and
//! webhooks deliver (`atelier_views`): enums are lower-case words (`succeeded`, `basic_clean`,
//! `webp`), times RFC 3339 text, and what is unset is null. The rest (accounts, keys, webhooks) is
//! built here from the protobuf messages with the proto's field names.

use atelier_proto::v1 as pb;
use serde_json::{json, Value};

/// A time as RFC 3339, or null.
pub fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// A job with its tasks and outputs, as the REST API shows it.
pub fn job(j: &pb::Job) -> Value {
    match atelier_views::Job::try_from(j) {
        Ok(job) => atelier_views::json(&job),
        // A newer orchestrator's kind or state: the job's id and what the CLI could not read.
        Err(unknown) => json!({ "id": j.id, "error": unknown.to_string() }),
    }
}

/// One job event as the REST API's event stream shows it, with its `WatchEvents` cursor.
pub fn event(e: &pb::JobEvent) -> Value {
    let mut value = atelier_views::json(&atelier_views::JobEvent::from(e));
    if let Value::Object(map) = &mut value {
        map.insert("cursor".to_string(), Value::String(e.cursor.clone()));
    }
    value
}

/// An upload.
pub fn upload(u: &pb::Upload) -> Value {
    json!({
        "id": u.id,
        "bytes": u.bytes,
        "sha256": u.sha256,
        "filename": u.filename,
        "content_type": u.content_type,
        "created_at": time(u.created_at.as_ref()),
    })
}

/// An account.
pub fn account(a: &pb::Account) -> Value {
    json!({
        "tenant_id": a.tenant_id,
        "external_id": a.external_id,
        "balance": a.balance,
        "member": a.member,
        "membership_expires_at": time(a.membership_expires_at.as_ref()),
        "active_jobs": a.active_jobs,
        "created_at": time(a.created_at.as_ref()),
    })
}

/// A page of the ledger.
pub fn ledger(page: &pb::ListLedgerResponse) -> Value {
    json!({
        "entries": page.entries.iter().map(|e| json!({
            "id": e.id,
            "kind": e.kind,
            "amount": e.amount,
            "reason": e.reason,
            "job_id": e.job_id,
            "task_id": e.task_id,
            "created_at": time(e.created_at.as_ref()),
        })).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })
}

/// A page of jobs.
pub fn jobs(page: &pb::ListJobsResponse) -> Value {
    json!({
        "jobs": page.jobs.iter().map(job).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })
}

/// A tenant.
pub fn tenant(t: &pb::Tenant) -> Value {
    json!({ "id": t.id, "name": t.name, "created_at": time(t.created_at.as_ref()) })
}

/// An API key (never the secret).
pub fn api_key(k: &pb::ApiKey) -> Value {
    json!({
        "id": k.id,
        "tenant_id": k.tenant_id,
        "account": k.account,
        "prefix": k.prefix,
        "created_at": time(k.created_at.as_ref()),
        "revoked_at": time(k.revoked_at.as_ref()),
    })
}

/// A webhook endpoint; `secret` is empty except when it was just created (and for the callback
/// endpoint, listed with a tenant-wide key).
pub fn webhook_endpoint(e: &pb::WebhookEndpoint) -> Value {
    json!({
        "id": e.id,
        "tenant_id": e.tenant_id,
        "account": e.account,
        "url": e.url,
        "secret": e.secret,
        "events": e.events,
        "created_at": time(e.created_at.as_ref()),
    })
}

/// The endpoints of the caller.
pub fn webhook_endpoints(list: &pb::ListWebhookEndpointsResponse) -> Value {
    json!({ "endpoints": list.endpoints.iter().map(webhook_endpoint).collect::<Vec<_>>() })
}

/// A page of webhook delivery attempts.
pub fn webhook_deliveries(page: &pb::ListWebhookDeliveriesResponse) -> Value {
    json!({
        "deliveries": page.deliveries.iter().map(|d| json!({
            "id": d.id,
            "endpoint_id": d.endpoint_id,
            "event_id": d.event_id,
            "job_id": d.job_id,
            "attempt": d.attempt,
            "status": d.status,
            "error": d.error,
            "delivered": d.delivered,
            "attempted_at": time(d.attempted_at.as_ref()),
            "next_attempt_at": time(d.next_attempt_at.as_ref()),
        })).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_deliveries_show_their_outcome_and_next_try() {
        let page = pb::ListWebhookDeliveriesResponse {
            deliveries: vec![pb::WebhookDelivery {
                id: "wa_1".into(),
                endpoint_id: "we_1".into(),
                job_id: "j1".into(),
                attempt: 2,
                status: 500,
                error: "HTTP 500".into(),
                next_attempt_at: Some(prost_types::Timestamp {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            }],
            next_page_token: "wa_1".into(),
        };
        let v = webhook_deliveries(&page);
        assert_eq!(v["deliveries"][0]["status"], 500);
        assert_eq!(v["deliveries"][0]["delivered"], false);
        assert_eq!(
            v["deliveries"][0]["next_attempt_at"],
            "1970-01-01T00:01:00Z"
        );
        assert_eq!(v["deliveries"][0]["attempted_at"], Value::Null);
        assert_eq!(v["next_page_token"], "wa_1");
    }

    #[test]
    fn jobs_use_short_enum_names_and_rfc3339_times() {
        let j = pb::Job {
            id: "j1".into(),
            kind: pb::JobKind::BasicClean as i32,
            state: pb::JobState::Succeeded as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            tasks: vec![pb::Task {
                state: pb::TaskState::Failed as i32,
                failure: Some(pb::Failure {
                    code: 3004,
                    reason: "INVALID_DIMENSIONS".into(),
                    message: "tiny".into(),
                }),
                ..Default::default()
            }],
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                    template: pb::CleanTemplate::WhiteBg as i32,
                    model: String::new(),
                    ..Default::default()
                })),
            }),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let v = job(&j);
        assert_eq!(v["state"], "succeeded");
        assert_eq!(v["kind"], "basic_clean");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["finished_at"], Value::Null);
        assert_eq!(v["tasks"][0]["state"], "failed");
        assert_eq!(v["tasks"][0]["failure"]["code"], 3004);
        assert_eq!(v["params"]["template"], "white_bg");
        assert_eq!(v["labels"]["a"], "b");
    }

    #[test]
    fn model_jobs_carry_their_params() {
        let generate = pb::Job {
            kind: pb::JobKind::Generate as i32,
            state: pb::JobState::Queued as i32,
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::Generate(pb::GenerateParams {
                    prompt: "a hat".into(),
                    width: 512,
                    height: 512,
                    num_images: 2,
                    seed: Some(7),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let v = job(&generate);
        assert_eq!(v["kind"], "generate");
        assert_eq!(v["params"]["prompt"], "a hat");
        assert_eq!(v["params"]["num_images"], 2);
        assert_eq!(v["params"]["seed"], 7);
        let edit = pb::Job {
            kind: pb::JobKind::Edit as i32,
            state: pb::JobState::Queued as i32,
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::Edit(pb::EditParams {
                    prompt: "brighter".into(),
                    size: "1024x1024".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let v = job(&edit);
        assert_eq!(v["kind"], "edit");
        assert_eq!(v["params"]["size"], "1024x1024");
        assert_eq!(v["params"]["seed"], Value::Null);
        let pose = pb::Job {
            kind: pb::JobKind::PoseSet as i32,
            state: pb::JobState::Queued as i32,
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::PoseSet(pb::PoseSetParams {
                    scene: pb::Scene::Street as i32,
                    category: "shoes".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let v = job(&pose);
        assert_eq!(v["kind"], "pose_set");
        assert_eq!(v["params"]["scene"], "street");
        assert_eq!(v["params"]["category"], "shoes");
    }

    #[test]
    fn events_carry_their_type() {
        let e = pb::JobEvent {
            job_id: "j1".into(),
            sequence: 4,
            event: Some(pb::job_event::Event::Progress(pb::TaskProgress {
                task_id: "t1".into(),
                stage: "resize".into(),
                percent: 50,
            })),
            ..Default::default()
        };
        let v = event(&e);
        assert_eq!(v["type"], "progress");
        assert_eq!(v["sequence"], 4);
        assert_eq!(v["percent"], 50);
    }
}
