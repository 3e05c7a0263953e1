//! JSON for `--json`, built by hand from the protobuf messages (prost types have no serde). Field names
//! are the proto's; enums are their names without the prefix (`SUCCEEDED`, `basic_clean`, `pose_set`,
//! `webp`); times are RFC 3339 strings or null.

use atelier_proto::v1 as pb;
use serde_json::{json, Map, Value};

use super::names;

/// A time as RFC 3339, or null.
pub fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// A job with its tasks and outputs.
pub fn job(j: &pb::Job) -> Value {
    json!({
        "id": j.id,
        "account": j.account,
        "kind": names::kind(j.kind),
        "state": names::job_state(j.state),
        "params": j.params.as_ref().map_or(Value::Null, params),
        "tasks": j.tasks.iter().map(task).collect::<Vec<_>>(),
        "labels": labels(&j.labels),
        "idempotency_key": j.idempotency_key,
        "callback_url": j.callback_url,
        "cost": j.cost,
        "refunded": j.refunded,
        "created_at": time(j.created_at.as_ref()),
        "updated_at": time(j.updated_at.as_ref()),
        "finished_at": time(j.finished_at.as_ref()),
        "deadline": time(j.deadline.as_ref()),
        "queue_position": j.queue_position,
        "estimated_seconds": j.estimated_seconds,
        "last_sequence": j.last_sequence,
    })
}

fn labels(map: &std::collections::HashMap<String, String>) -> Value {
    let mut sorted: Vec<_> = map.iter().collect();
    sorted.sort();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// A task of a job.
pub fn task(t: &pb::Task) -> Value {
    json!({
        "id": t.id,
        "index": t.index,
        "source": t.source.as_ref().map_or(Value::Null, source),
        "state": names::task_state(t.state),
        "attempts": t.attempts,
        "stage": t.stage,
        "percent": t.percent,
        "outputs": t.outputs.iter().map(output).collect::<Vec<_>>(),
        "failure": failure(t.failure.as_ref()),
        "from_cache": t.from_cache,
        "started_at": time(t.started_at.as_ref()),
        "finished_at": time(t.finished_at.as_ref()),
        "source_info": t.source_info.as_ref().map_or(Value::Null, source_info),
    })
}

/// A job source: `{"url": …}` or `{"upload_id": …}`.
pub fn source(s: &pb::Source) -> Value {
    match &s.source {
        Some(pb::source::Source::Url(url)) => json!({ "url": url }),
        Some(pb::source::Source::UploadId(id)) => json!({ "upload_id": id }),
        None => Value::Null,
    }
}

/// What the processor read from a source.
pub fn source_info(s: &pb::SourceInfo) -> Value {
    json!({
        "sha256": s.sha256,
        "format": names::format(s.format),
        "width": s.width,
        "height": s.height,
        "bytes": s.bytes,
    })
}

/// One output image.
pub fn output(o: &pb::Output) -> Value {
    json!({
        "name": o.name,
        "url": o.url,
        "key": o.key,
        "content_type": o.content_type,
        "width": o.width,
        "height": o.height,
        "bytes": o.bytes,
        "sha256": o.sha256,
        "thumbnail": o.thumbnail.as_ref().map_or(Value::Null, |t| json!({
            "url": t.url,
            "key": t.key,
            "content_type": t.content_type,
            "width": t.width,
            "height": t.height,
            "bytes": t.bytes,
        })),
        "from_cache": o.from_cache,
        "matting": o.matting.as_ref().map_or(Value::Null, |m| json!({
            "method": m.method,
            "model": m.model,
            "confidence": m.confidence,
        })),
    })
}

/// A failure, or null.
pub fn failure(f: Option<&pb::Failure>) -> Value {
    f.map_or(
        Value::Null,
        |f| json!({ "code": f.code, "reason": f.reason, "message": f.message }),
    )
}

/// Job parameters, with the kind they belong to.
pub fn params(p: &pb::JobParams) -> Value {
    use pb::job_params::Params;
    match &p.params {
        Some(Params::Transform(t)) => json!({
            "transform": {
                "resize": t.resize.as_ref().map_or(Value::Null, |r| json!({
                    "width": r.width, "height": r.height, "fit": names::fit(r.fit),
                })),
                "crop": t.crop.as_ref().map_or(Value::Null, |c| json!({
                    "x": c.x, "y": c.y, "width": c.width, "height": c.height,
                })),
                "rotate": t.rotate,
                "flip_horizontal": t.flip_horizontal,
                "flip_vertical": t.flip_vertical,
                "auto_orient": t.auto_orient,
                "format": names::format(t.format),
                "quality": t.quality,
                "lossless": t.lossless,
                "strip_metadata": t.strip_metadata,
            }
        }),
        Some(Params::BasicClean(c)) => json!({
            "basic_clean": {
                "template": names::template(c.template), "model": c.model,
                "method": names::matting_method(c.method), "min_confidence": c.min_confidence,
            }
        }),
        Some(Params::Edit(e)) => json!({
            "edit": {
                "prompt": e.prompt, "negative_prompt": e.negative_prompt, "model": e.model,
                "seed": e.seed, "size": e.size, "num_images": e.num_images,
            }
        }),
        Some(Params::Generate(g)) => json!({
            "generate": {
                "prompt": g.prompt, "negative_prompt": g.negative_prompt, "model": g.model,
                "width": g.width, "height": g.height, "num_images": g.num_images, "steps": g.steps,
                "guidance_scale": g.guidance_scale, "seed": g.seed,
            }
        }),
        Some(Params::PoseSet(p)) => json!({
            "pose_set": {
                "scene": names::scene(p.scene), "category": p.category,
                "description": p.description, "model": p.model,
            }
        }),
        None => Value::Null,
    }
}

/// One job event: common fields, `type`, and the event's own fields under its type name.
pub fn event(e: &pb::JobEvent) -> Value {
    use pb::job_event::Event;
    let (kind, body) = match &e.event {
        Some(Event::JobState(s)) => (
            "job_state",
            json!({ "state": names::job_state(s.state), "failure": failure(s.failure.as_ref()) }),
        ),
        Some(Event::TaskState(s)) => (
            "task_state",
            json!({
                "task_id": s.task_id,
                "state": names::task_state(s.state),
                "attempts": s.attempts,
                "failure": failure(s.failure.as_ref()),
                "retry_at": time(s.retry_at.as_ref()),
            }),
        ),
        Some(Event::Progress(p)) => (
            "progress",
            json!({ "task_id": p.task_id, "stage": p.stage, "percent": p.percent }),
        ),
        Some(Event::Log(l)) => (
            "log",
            json!({ "task_id": l.task_id, "level": l.level, "message": l.message, "origin": l.origin }),
        ),
        Some(Event::Output(o)) => (
            "output",
            json!({ "task_id": o.task_id, "output": o.output.as_ref().map_or(Value::Null, output) }),
        ),
        Some(Event::Queue(q)) => (
            "queue",
            json!({ "position": q.position, "estimated_seconds": q.estimated_seconds }),
        ),
        Some(Event::SourceFetched(s)) => (
            "source_fetched",
            json!({ "task_id": s.task_id, "source": s.source.as_ref().map_or(Value::Null, source_info) }),
        ),
        None => ("unknown", Value::Null),
    };
    let mut value = json!({
        "job_id": e.job_id,
        "sequence": e.sequence,
        "time": time(e.time.as_ref()),
        "cursor": e.cursor,
        "type": kind,
    });
    if let Value::Object(map) = &mut value {
        map.insert(kind.to_string(), body);
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
        assert_eq!(v["state"], "SUCCEEDED");
        assert_eq!(v["kind"], "basic_clean");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["finished_at"], Value::Null);
        assert_eq!(v["tasks"][0]["state"], "FAILED");
        assert_eq!(v["tasks"][0]["failure"]["code"], 3004);
        assert_eq!(v["params"]["basic_clean"]["template"], "white_bg");
        assert_eq!(v["labels"]["a"], "b");
    }

    #[test]
    fn model_jobs_carry_their_params() {
        let generate = pb::Job {
            kind: pb::JobKind::Generate as i32,
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
        assert_eq!(v["params"]["generate"]["prompt"], "a hat");
        assert_eq!(v["params"]["generate"]["num_images"], 2);
        assert_eq!(v["params"]["generate"]["seed"], 7);
        let edit = pb::Job {
            kind: pb::JobKind::Edit as i32,
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
        assert_eq!(v["params"]["edit"]["size"], "1024x1024");
        assert_eq!(v["params"]["edit"]["seed"], Value::Null);
        let pose = pb::Job {
            kind: pb::JobKind::PoseSet as i32,
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
        assert_eq!(v["params"]["pose_set"]["scene"], "street");
        assert_eq!(v["params"]["pose_set"]["category"], "shoes");
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
        assert_eq!(v["progress"]["percent"], 50);
    }
}
