//! `/v1/webhooks`: endpoints registered over REST receive signed deliveries (retried after a 500),
//! every attempt is listed per endpoint and per job, bad input and unknown ids get their codes, and a
//! deleted endpoint is gone.

use std::time::Duration;

use atelier_testkit::WebhookReceiver;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;

fn allow_loopback_webhooks(config: &mut atelier_orchestrator::Config) {
    config.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.webhook_retry_base_seconds = 0.05;
    config.webhook_timeout_seconds = 5.0;
}

/// The attempts listed at `path` once `done` holds (read every 50 ms for up to 30 s).
async fn attempts_until(
    app: &TestApp,
    tenant: &Tenant,
    path: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = app.get_json(tenant, path).await;
        assert_eq!(status, 200, "{page}");
        let attempts = page["deliveries"].as_array().cloned().unwrap_or_default();
        if done(&attempts) {
            return attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {attempts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn endpoints_are_created_listed_delivered_to_and_deleted(backend: Backend) {
    let app = spawn_stack_with(backend, |_| {}, allow_loopback_webhooks, |_| {}).await;
    let tenant = app.shop().await;
    let receiver = WebhookReceiver::start().await;

    // Acting as the shopper, the endpoint is the shopper's.
    let (status, endpoint) = app
        .post_json(
            &tenant,
            "/v1/webhooks",
            json!({"url": receiver.url("/hooks"), "events": ["terminal"]}),
        )
        .await;
    assert_eq!(status, 200, "{endpoint}");
    assert_eq!(endpoint["account"], "shopper", "{endpoint}");
    assert_eq!(endpoint["url"], receiver.url("/hooks"));
    assert_eq!(endpoint["events"], json!(["terminal"]));
    let secret = endpoint["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    let id = endpoint["id"].as_str().expect("id").to_string();

    // Without X-Atelier-Account a tenant-wide key registers for the whole tenant.
    let response = app
        .http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&tenant.key)
        .json(&json!({"url": receiver.url("/tenant"), "events": ["terminal", "progress"]}))
        .send()
        .await
        .expect("request");
    let (status, tenant_wide) = status_and_json(response).await;
    assert_eq!(status, 200, "{tenant_wide}");
    assert_eq!(tenant_wide["account"], Value::Null, "{tenant_wide}");
    assert_eq!(tenant_wide["events"], json!(["terminal", "progress"]));

    let (status, list) = app.get_json(&tenant, "/v1/webhooks").await;
    assert_eq!(status, 200, "{list}");
    let endpoints = list["endpoints"].as_array().expect("endpoints");
    let callback = endpoints
        .iter()
        .find(|e| e["url"].is_null())
        .expect("the callback endpoint is listed for a tenant-wide key");
    assert!(callback["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    let listed = endpoints
        .iter()
        .find(|e| e["id"] == id.as_str())
        .expect("listed");
    assert_eq!(
        listed["secret"],
        Value::Null,
        "secrets are shown only at creation"
    );

    // The first call fails; the retry is delivered, signed with the endpoint's secret.
    receiver.fail_next("/hooks", 1);
    let job = app
        .submit_transform(&tenant, &[app.sources.url("/image.jpg")])
        .await;
    let job_id = job["id"].as_str().expect("job id").to_string();
    let job = app.finish(&tenant, &job_id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let log = receiver
        .wait_until(
            "the shopper's endpoint's delivery",
            Duration::from_secs(30),
            |log| {
                log.iter().any(|d| {
                    d.path == "/hooks" && d.status == 200 && d.json["job_id"] == job_id.as_str()
                })
            },
        )
        .await;
    let delivered = log
        .iter()
        .find(|d| d.path == "/hooks" && d.status == 200)
        .expect("delivered");
    assert!(delivered.signed_with(&secret), "{delivered:#?}");
    assert_eq!(delivered.json["type"], "job.succeeded");
    assert_eq!(delivered.json["data"]["state"], "succeeded");
    // The body carries result links minted as it was sent, and they open.
    let link = delivered.json["data"]["tasks"][0]["outputs"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("an output link in {:#}", delivered.json));
    assert!(link.starts_with(&app.url("/v1/files/")), "{link}");
    let opened = reqwest::get(link).await.expect("open the link");
    assert_eq!(opened.status(), 200, "{link}");

    let per_endpoint = format!("/v1/webhooks/{id}/deliveries?job_id={job_id}");
    let attempts = attempts_until(&app, &tenant, &per_endpoint, |a| {
        a.iter().any(|a| a["delivered"] == true)
    })
    .await;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["delivered"], false);
    assert!(attempts[0]["error"].is_string(), "{attempts:#?}");
    assert_eq!(attempts[1]["status"], 200);
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["next_attempt_at"], Value::Null);
    assert!(attempts
        .iter()
        .all(|a| a["endpoint_id"] == id.as_str() && a["job_id"] == job_id.as_str()));

    // Across endpoints, by job: the tenant-wide endpoint got the progress events and the end too.
    let by_job = attempts_until(
        &app,
        &tenant,
        &format!("/v1/webhooks/deliveries?job_id={job_id}&page_size=100"),
        |a| {
            a.iter()
                .any(|a| a["endpoint_id"] == tenant_wide["id"] && a["delivered"] == true)
        },
    )
    .await;
    assert!(by_job.iter().any(|a| a["endpoint_id"] == id.as_str()));
    let only_ours = attempts_until(
        &app,
        &tenant,
        &format!("/v1/webhooks/deliveries?job_id={job_id}&endpoint_id={id}"),
        |a| !a.is_empty(),
    )
    .await;
    assert!(only_ours.iter().all(|a| a["endpoint_id"] == id.as_str()));

    // Bad input and unknown ids.
    let (status, body) = app
        .post_json(
            &tenant,
            "/v1/webhooks",
            json!({"url": "ftp://example.com/hook"}),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    assert_eq!(body["error"]["details"][0]["field"], "url", "{body}");
    let (status, body) = app
        .post_json(
            &tenant,
            "/v1/webhooks",
            json!({"url": receiver.url("/x"), "events": ["everything"]}),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    let response = app
        .call(
            reqwest::Method::DELETE,
            "/v1/webhooks/we_missing",
            &tenant,
            "shopper",
        )
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");
    let response = app
        .http
        .get(app.url("/v1/webhooks"))
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_error(status, &body, 401, 1001, "UNAUTHENTICATED");

    // Delete: gone from the list, and a second delete is a 404.
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            &tenant,
            "shopper",
        )
        .send()
        .await
        .expect("request");
    let (status, deleted) = status_and_json(response).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["secret"], Value::Null);
    let (_, list) = app.get_json(&tenant, "/v1/webhooks").await;
    assert!(list["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .all(|e| e["id"] != id.as_str()));
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            &tenant,
            "shopper",
        )
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");
}

on_both_databases!(endpoints_are_created_listed_delivered_to_and_deleted);

/// `value` with every `url` field emptied: result links are minted, and signed, as each is read.
fn without_links(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "url" {
                    *field = Value::Null;
                } else {
                    without_links(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_links),
        _ => {}
    }
}

/// A finished job's webhook carries the job exactly as `GET /v1/jobs/{id}` shows it (one view of a
/// job, `atelier_views`), links aside.
async fn a_finished_jobs_webhook_carries_the_job_as_the_api_shows_it(backend: Backend) {
    let app = spawn_stack_with(backend, |_| {}, allow_loopback_webhooks, |_| {}).await;
    let tenant = app.shop().await;
    let receiver = WebhookReceiver::start().await;
    let (status, endpoint) = app
        .post_json(
            &tenant,
            "/v1/webhooks",
            json!({"url": receiver.url("/hooks"), "events": ["terminal"]}),
        )
        .await;
    assert_eq!(status, 200, "{endpoint}");
    let job = app
        .submit_transform(&tenant, &[app.sources.url("/image.jpg")])
        .await;
    let job_id = job["id"].as_str().expect("job id").to_string();
    let mut shown = app.finish(&tenant, &job_id).await;
    let is_ours = |d: &atelier_testkit::webhook::Delivery| {
        d.status == 200 && d.json["job_id"] == job_id.as_str()
    };
    let log = receiver
        .wait_until("the job's delivery", Duration::from_secs(30), |log| {
            log.iter().any(is_ours)
        })
        .await;
    let delivered = log.iter().find(|d| is_ours(d)).expect("delivered");
    assert_eq!(delivered.json["type"], "job.succeeded");
    let mut sent = delivered.json["data"].clone();
    without_links(&mut sent);
    without_links(&mut shown);
    assert_eq!(sent, shown);
}

on_both_databases!(a_finished_jobs_webhook_carries_the_job_as_the_api_shows_it);
