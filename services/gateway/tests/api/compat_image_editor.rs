//! Seed 000's routes (`/submit/`, `/result/`, `/batch_submit/`, `/batch_result/`, `/status/`) with
//! requests shaped as its document shows, answering its state names and codes.

use base64::Engine as _;
use serde_json::{json, Value};

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{
    spawn_app, spawn_with_provider, spawn_with_provider_and, status_and_json, Backend,
};
use crate::on_both_databases;

on_both_databases!(status_needs_no_key);

async fn status_needs_no_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = status_and_json(
        app.http
            .get(app.url("/status/"))
            .send()
            .await
            .expect("status"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().expect("timestamp"))
            .is_ok()
    );
}

on_both_databases!(result_and_batch_result_answer_in_its_shapes);

async fn result_and_batch_result_answer_in_its_shapes(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let batch = uuid::Uuid::new_v4().to_string();
    // Jobs of a batch are found by their batch_id label, the way /batch_submit/ marks them.
    let mut ids = Vec::new();
    for source in ["/image.jpg", "/not-an-image"] {
        let (status, job) = app
            .post_json(
                &shop,
                "/v1/jobs",
                json!({
                    "kind": "transform",
                    "sources": [{"url": app.sources.url(source)}],
                    "labels": {"batch_id": batch},
                }),
            )
            .await;
        assert_eq!(status, 200, "{job}");
        ids.push(job["id"].as_str().expect("id").to_string());
    }
    let (status, early) = app
        .post_json(&shop, "/result/", json!({"task_id": ids[0]}))
        .await;
    assert_eq!(status, 200, "{early}");
    assert!(
        early["status"] == "processing" || early["status"] == "success",
        "{early}"
    );
    for id in &ids {
        app.finish(&shop, id).await;
    }

    let (status, ok) = app
        .post_json(&shop, "/result/", json!({"task_id": ids[0]}))
        .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["task_id"], ids[0].as_str());
    assert_eq!(ok["status"], "success");
    assert_eq!(
        ok["image_url"],
        app.sources.url("/image.jpg").as_str(),
        "{ok}"
    );
    assert_eq!(ok["prompt"], Value::Null, "a transform has no prompt: {ok}");
    assert_eq!(ok["callback_url"], Value::Null, "{ok}");
    // The image itself, base64, as the old system answered: the stored output's very bytes.
    let (_, job) = app.get_json(&shop, &format!("/v1/jobs/{}", ids[0])).await;
    let link = job["tasks"][0]["outputs"][0]["url"]
        .as_str()
        .expect("output url")
        .to_string();
    let stored = app
        .http
        .get(&link)
        .send()
        .await
        .expect("output")
        .bytes()
        .await
        .expect("bytes");
    let inlined = base64::engine::general_purpose::STANDARD
        .decode(ok["result_image"].as_str().expect("result_image"))
        .expect("base64");
    assert!(!stored.is_empty());
    assert_eq!(
        inlined,
        stored.to_vec(),
        "result_image is the output's bytes"
    );
    // A link on request, in JSON and in a form alike.
    let (status, linked) = app
        .post_json(
            &shop,
            "/result/",
            json!({"task_id": ids[0], "result_format": "url"}),
        )
        .await;
    assert_eq!(status, 200, "{linked}");
    let url = linked["result_image"].as_str().expect("link");
    assert!(url.starts_with("http"), "{linked}");
    let form = app
        .http
        .post(app.url("/result/"))
        .bearer_auth(&shop.key)
        .header("x-atelier-account", "shopper")
        .form(&[("task_id", ids[0].as_str()), ("result_format", "url")])
        .send()
        .await
        .expect("form");
    let (status, by_form) = status_and_json(form).await;
    assert_eq!(status, 200, "{by_form}");
    assert!(
        by_form["result_image"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "{by_form}"
    );
    assert!(
        ok["processing_time"].as_f64().is_some_and(|t| t >= 0.0),
        "{ok}"
    );
    assert!(ok["completed_at"].is_string(), "{ok}");
    assert_eq!(ok["error_code"], serde_json::Value::Null);

    let (status, failed) = app
        .post_json(&shop, "/result/", json!({"task_id": ids[1]}))
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error_code"], 3003,
        "an unsupported format keeps its code: {failed}"
    );
    assert!(failed["error_message"].is_string());
    assert_eq!(failed["result_image"], serde_json::Value::Null);

    let (status, by_batch) = app
        .post_json(&shop, "/batch_result/", json!({"batch_id": batch}))
        .await;
    assert_eq!(status, 200, "{by_batch}");
    assert_eq!(by_batch["batch_id"], batch.as_str());
    assert_eq!(by_batch["total_count"], 2);
    assert_eq!(by_batch["completed_count"], 2);
    assert_eq!(
        by_batch["tasks"][0]["task_id"],
        ids[0].as_str(),
        "in submission order"
    );
    assert_eq!(by_batch["tasks"][1]["status"], "failed");

    let (status, by_ids) = app
        .post_json(
            &shop,
            "/batch_result/",
            json!({"task_ids": [ids[1], ids[0]]}),
        )
        .await;
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(by_ids["total_count"], 2);
    assert_eq!(by_ids["tasks"][0]["task_id"], ids[1].as_str());
}

on_both_databases!(its_error_codes);

async fn its_error_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;

    let (status, body) = app
        .post_json(&shop, "/result/", json!({"task_id": "not-a-uuid"}))
        .await;
    assert_eq!((status, body["code"].clone()), (400, json!(1003)), "{body}");
    assert!(body["message"].is_string());
    let (status, body) = app
        .post_json(
            &shop,
            "/result/",
            json!({"task_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!(1004)), "{body}");
    let (status, body) = app
        .post_json(
            &shop,
            "/batch_result/",
            json!({"batch_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!(1004)), "{body}");
    let (status, body) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"image": app.sources.url("/image.jpg")}),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!(1003)),
        "missing prompt: {body}"
    );
    let (status, body) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"prompt": "  ", "image": app.sources.url("/image.jpg")}),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!(1003)),
        "empty prompt: {body}"
    );
    let (status, body) = app
        .post_json(&shop, "/batch_submit/", json!({"tasks": []}))
        .await;
    assert_eq!((status, body["code"].clone()), (400, json!(1003)), "{body}");

    // Its bad credentials read as its 1002 (权限不足), with the HTTP status of the failure.
    let (status, body) = status_and_json(
        app.http
            .post(app.url("/result/"))
            .bearer_auth("atl_wrong")
            .json(&json!({"task_id": uuid::Uuid::new_v4().to_string()}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (401, json!(1002)), "{body}");

    // An edit needs a model provider; none is configured here, which this API calls 3001 (模型调用失败).
    let (status, body) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"prompt": "make the sky pink", "image": app.sources.url("/image.jpg"), "callback_url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (422, json!(3001)), "{body}");
    let (status, body) = app
        .post_json(
            &shop,
            "/batch_submit/",
            json!({"tasks": [{"prompt": "pink sky", "image": app.sources.url("/image.jpg")}], "callback_url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (422, json!(3001)), "{body}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "nothing was charged: {account}");
}

on_both_databases!(submit_and_batches_run_edits_on_a_model_provider);

async fn submit_and_batches_run_edits_on_a_model_provider(backend: Backend) {
    let provider = ProviderServer::start().await;
    provider.refuse_prompts_containing("forbidden");
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let image = app.sources.url("/image.jpg");

    // The document's request: {prompt, image, callback_url}; here without a callback.
    let (status, submitted) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"prompt": "make the sky pink", "image": image}),
        )
        .await;
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["status"], "processing");
    assert!(submitted["estimated_time"].is_u64(), "{submitted}");
    let task_id = submitted["task_id"].as_str().expect("task_id").to_string();
    app.finish(&shop, &task_id).await;
    let (status, result) = app
        .post_json(&shop, "/result/", json!({"task_id": task_id}))
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "success", "{result}");
    assert!(
        result["result_image"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{result}"
    );
    let edit = provider
        .seen()
        .into_iter()
        .find(|c| c.path.ends_with("/images/edits"))
        .expect("an edit call");
    assert_eq!(edit.field("prompt").as_deref(), Some("make the sky pink"));

    let (status, batch) = app
        .post_json(
            &shop,
            "/batch_submit/",
            json!({
                "tasks": [
                    {"prompt": "brighter", "image": image},
                    {"prompt": "something forbidden", "image": image}
                ]
            }),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["total_count"], 2);
    let batch_id = batch["batch_id"].as_str().expect("batch_id").to_string();
    let ids: Vec<String> = batch["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        app.finish(&shop, id).await;
    }
    let (status, results) = app
        .post_json(&shop, "/batch_result/", json!({"batch_id": batch_id}))
        .await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["total_count"], 2);
    assert_eq!(results["completed_count"], 2);
    assert_eq!(results["tasks"][0]["task_id"], ids[0].as_str());
    assert_eq!(results["tasks"][0]["status"], "success");
    assert_eq!(results["tasks"][1]["status"], "failed");
    // A refused prompt (Atelier 3007) is this API's 3001, 模型调用失败.
    assert_eq!(results["tasks"][1]["error_code"], 3001, "{results}");
}

on_both_databases!(forms_and_multipart_bodies_work_as_json_does);

async fn forms_and_multipart_bodies_work_as_json_does(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let post = |path: &str| app.call(reqwest::Method::POST, path, &shop, "shopper");

    // An urlencoded form, as an HTML form posts it.
    let image = app.sources.url("/image.jpg");
    let form = post("/submit/")
        .form(&[("prompt", "make the sky pink"), ("image", image.as_str())])
        .send()
        .await
        .expect("form submit");
    let (status, by_form) = status_and_json(form).await;
    assert_eq!(status, 200, "{by_form}");
    // A multipart form carrying the image file itself.
    let file = reqwest::multipart::Part::bytes(crate::helpers::images::png(48, 32))
        .file_name("shoe.png")
        .mime_str("image/png")
        .expect("mime");
    let multipart = reqwest::multipart::Form::new()
        .text("prompt", "make the sky blue")
        .part("image", file);
    let with_file = post("/submit/")
        .multipart(multipart)
        .send()
        .await
        .expect("multipart submit");
    let (status, by_file) = status_and_json(with_file).await;
    assert_eq!(status, 200, "{by_file}");

    for submitted in [&by_form, &by_file] {
        let id = submitted["task_id"].as_str().expect("task_id");
        app.finish(&shop, id).await;
        // `/result/` as a form too.
        let answer = post("/result/")
            .form(&[("task_id", id)])
            .send()
            .await
            .expect("form result");
        let (status, result) = status_and_json(answer).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["status"], "success", "{result}");
    }
    // The file went to the model as the image of the edit.
    let edits: Vec<_> = provider
        .seen()
        .into_iter()
        .filter(|c| c.path.ends_with("/images/edits"))
        .collect();
    assert_eq!(edits.len(), 2);
    let blue = edits
        .iter()
        .find(|c| c.field("prompt").as_deref() == Some("make the sky blue"))
        .expect("the multipart edit");
    let sent = crate::helpers::images::decode(blue.image.as_deref().expect("image bytes"));
    assert_eq!((sent.width(), sent.height()), (48, 32));

    // A form missing a field is the family's 1003, and a body in no known encoding too.
    let (status, body) = status_and_json(
        post("/submit/")
            .form(&[("prompt", "x")])
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 1003);
    let (status, body) = status_and_json(
        post("/result/")
            .header("content-type", "text/plain")
            .body("task_id=1")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 1003);
}

/// Callbacks may reach the test's receiver on 127.0.0.1 and are retried quickly.
fn loopback_webhooks(config: &mut atelier_orchestrator::Config) {
    config.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.webhook_retry_base_seconds = 0.05;
}

/// The secret of the tenant's callback endpoint, which signs every `callback_url` delivery.
async fn callback_secret(app: &crate::helpers::TestApp, tenant: &crate::helpers::Tenant) -> String {
    let (status, list) = status_and_json(
        app.http
            .get(app.url("/v1/webhooks"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .expect("list webhooks"),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    list["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["url"].is_null())
        .and_then(|e| e["secret"].as_str())
        .expect("the callback endpoint's secret")
        .to_string()
}

/// Seed 000's `/result/` fields, exactly.
const RESULT_FIELDS: [&str; 11] = [
    "callback_url",
    "completed_at",
    "created_at",
    "error_code",
    "error_message",
    "image_url",
    "processing_time",
    "prompt",
    "result_image",
    "status",
    "task_id",
];

fn field_names(value: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

on_both_databases!(a_hundred_entry_batch_holds_one_active_job);

async fn a_hundred_entry_batch_holds_one_active_job(backend: Backend) {
    let provider = ProviderServer::start().await;
    // Nothing runs, so the batch stays active while the plain submits come.
    let app =
        spawn_with_provider_and(backend, &provider, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let shop = app.tenant("shop").await;
    app.member(&shop, "shopper", 200).await;
    let image = app.sources.url("/image.jpg");
    let tasks: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"prompt": format!("variant {i}"), "image": image}))
        .collect();
    let (status, batch) = app
        .post_json(&shop, "/batch_submit/", json!({"tasks": tasks}))
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["total_count"], 100);
    let entries = batch["tasks"].as_array().expect("tasks");
    assert_eq!(entries.len(), 100);
    for entry in entries {
        assert_eq!(entry["status"], "processing", "{entry}");
        assert!(entry["task_id"].is_string(), "{entry}");
        assert_eq!(entry["error_code"], serde_json::Value::Null, "{entry}");
    }
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "one unit per entry: {account}");

    let batch_id = batch["batch_id"].as_str().expect("batch_id");
    let (status, results) = app
        .post_json(&shop, "/batch_result/", json!({"batch_id": batch_id}))
        .await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["total_count"], 100);
    assert_eq!(results["completed_count"], 0);
    let listed: Vec<&serde_json::Value> = results["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| &t["task_id"])
        .collect();
    let submitted: Vec<&serde_json::Value> = entries.iter().map(|t| &t["task_id"]).collect();
    assert_eq!(listed, submitted, "every entry, in submission order");

    // The batch is one of the ten active jobs allowed: nine more fit, the tenth does not.
    for i in 0..9 {
        let (status, body) = app
            .post_json(
                &shop,
                "/submit/",
                json!({"prompt": format!("single {i}"), "image": image}),
            )
            .await;
        assert_eq!(status, 200, "plain job {i}: {body}");
    }
    let (status, refused) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({"kind": "transform", "sources": [{"url": image}]}),
        )
        .await;
    crate::helpers::assert_error(status, &refused, 429, 2003, "TOO_MANY_ACTIVE_JOBS");
    let (status, refused) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"prompt": "one more", "image": image}),
        )
        .await;
    assert_eq!(
        (status, refused["code"].clone()),
        (429, json!(1002)),
        "{refused}"
    );
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 91, "{account}");
}

on_both_databases!(a_batch_the_balance_runs_out_in_refuses_only_the_unpaid_entries);

async fn a_batch_the_balance_runs_out_in_refuses_only_the_unpaid_entries(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app =
        spawn_with_provider_and(backend, &provider, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let shop = app.tenant("shop").await;
    app.member(&shop, "shopper", 3).await;
    let image = app.sources.url("/image.jpg");
    let tasks: Vec<serde_json::Value> = (0..5)
        .map(|i| json!({"prompt": format!("variant {i}"), "image": image}))
        .collect();
    let (status, batch) = app
        .post_json(&shop, "/batch_submit/", json!({"tasks": tasks}))
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["total_count"], 5);
    for (i, entry) in batch["tasks"].as_array().expect("tasks").iter().enumerate() {
        if i < 3 {
            assert!(entry["task_id"].is_string(), "{entry}");
        } else {
            assert_eq!(entry["task_id"], serde_json::Value::Null, "{entry}");
            assert_eq!(entry["status"], "failed", "{entry}");
            // Atelier's 2002 is this API's 1002 (权限不足).
            assert_eq!(entry["error_code"], 1002, "{entry}");
            assert!(entry["error_message"].is_string(), "{entry}");
        }
    }
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 0, "never below zero: {account}");
    // With nothing left, the whole batch is refused.
    let (status, body) = app
        .post_json(
            &shop,
            "/batch_submit/",
            json!({"tasks": [{"prompt": "more", "image": image}]}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (402, json!(1002)), "{body}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 0, "{account}");
}

on_both_databases!(a_batch_callback_arrives_once_in_the_batch_result_shape);

async fn a_batch_callback_arrives_once_in_the_batch_result_shape(backend: Backend) {
    let provider = ProviderServer::start().await;
    provider.refuse_prompts_containing("forbidden");
    let app = spawn_with_provider_and(backend, &provider, loopback_webhooks, |_| {}).await;
    let receiver = atelier_testkit::WebhookReceiver::start().await;
    let shop = app.shop().await;
    let image = app.sources.url("/image.jpg");
    let (status, batch) = app
        .post_json(
            &shop,
            "/batch_submit/",
            json!({
                "tasks": [
                    {"prompt": "brighter", "image": image},
                    {"prompt": "something forbidden", "image": image},
                    {"prompt": "warmer", "image": image}
                ],
                "callback_url": receiver.url("/batch")
            }),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let batch_id = batch["batch_id"].as_str().expect("batch_id").to_string();
    let ids: Vec<String> = batch["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect();
    for id in &ids {
        app.finish(&shop, id).await;
    }
    let log = receiver
        .wait_until(
            "the batch callback",
            std::time::Duration::from_secs(60),
            |log| log.iter().any(|d| d.path == "/batch" && d.status == 200),
        )
        .await;
    let secret = callback_secret(&app, &shop).await;
    let delivered: Vec<_> = log.iter().filter(|d| d.path == "/batch").collect();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert!(delivered[0].signed_with(&secret), "{:#?}", delivered[0]);
    let body = &delivered[0].json;
    assert_eq!(
        field_names(body),
        ["batch_id", "completed_count", "tasks", "total_count"],
        "{body:#}"
    );
    assert_eq!(body["batch_id"], batch_id.as_str());
    assert_eq!(body["total_count"], 3);
    assert_eq!(body["completed_count"], 3);
    let tasks = body["tasks"].as_array().expect("tasks");
    let task_ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id"))
        .collect();
    assert_eq!(task_ids, ids, "in submission order");
    for task in tasks {
        assert_eq!(field_names(task), RESULT_FIELDS, "{task:#}");
    }
    assert_eq!(tasks[0]["status"], "success");
    assert_eq!(tasks[2]["status"], "success");
    // In a batch the image is a link (inlined, 100 images would be far too big), and it opens.
    let link = tasks[0]["result_image"].as_str().expect("a link");
    assert!(link.starts_with(&app.url("/v1/files/")), "{link}");
    let opened = reqwest::get(link).await.expect("open the link");
    assert_eq!(opened.status(), 200, "{link}");
    assert_eq!(tasks[1]["status"], "failed");
    assert_eq!(tasks[1]["error_code"], 3001, "{body:#}");
    assert_eq!(tasks[1]["result_image"], serde_json::Value::Null);
    assert!(tasks[0]["processing_time"]
        .as_f64()
        .is_some_and(|t| t >= 0.0));
    // Entries without their own callback_url get none: the batch's is sent once, for the batch.
    let (status, _) = app
        .post_json(
            &shop,
            "/submit/",
            json!({"prompt": "later", "image": image, "callback_url": receiver.url("/later")}),
        )
        .await;
    assert_eq!(status, 200);
    let log = receiver
        .wait_until(
            "the later callback",
            std::time::Duration::from_secs(60),
            |log| log.iter().any(|d| d.path == "/later" && d.status == 200),
        )
        .await;
    let paths: Vec<&str> = log.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/batch", "/later"], "{log:#?}");
}

on_both_databases!(a_submit_callback_carries_the_result_shape_with_the_image_inlined);

async fn a_submit_callback_carries_the_result_shape_with_the_image_inlined(backend: Backend) {
    use base64::Engine as _;
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider_and(backend, &provider, loopback_webhooks, |_| {}).await;
    let receiver = atelier_testkit::WebhookReceiver::start().await;
    let shop = app.shop().await;
    // The document's request: {prompt, image, callback_url}.
    let (status, submitted) = app
        .post_json(
            &shop,
            "/submit/",
            json!({
                "prompt": "make the sky pink",
                "image": app.sources.url("/image.jpg"),
                "callback_url": receiver.url("/hook")
            }),
        )
        .await;
    assert_eq!(status, 200, "{submitted}");
    let task_id = submitted["task_id"].as_str().expect("task_id");
    let job = app.finish(&shop, task_id).await;
    assert_eq!(job["family"], "image_editor", "{job}");
    let log = receiver
        .wait_until(
            "the task's callback",
            std::time::Duration::from_secs(60),
            |log| log.iter().any(|d| d.path == "/hook" && d.status == 200),
        )
        .await;
    assert_eq!(log.len(), 1, "{log:#?}");
    let delivery = &log[0];
    let secret = callback_secret(&app, &shop).await;
    assert!(delivery.signed_with(&secret), "{delivery:#?}");
    assert!(!delivery.signed_with("whsec_someone_else"));
    let body = &delivery.json;
    assert_eq!(field_names(body), RESULT_FIELDS, "{body:#}");
    assert_eq!(body["task_id"], task_id);
    assert_eq!(body["status"], "success");
    assert_eq!(body["error_code"], serde_json::Value::Null);
    assert_eq!(body["error_message"], serde_json::Value::Null);
    assert!(body["processing_time"].as_f64().is_some_and(|t| t >= 0.0));
    assert!(body["completed_at"].is_string() && body["created_at"].is_string());
    // result_image is the output itself in base64, as the seed sent it.
    let inlined = base64::engine::general_purpose::STANDARD
        .decode(body["result_image"].as_str().expect("base64 text"))
        .expect("valid base64");
    let link = job["tasks"][0]["outputs"][0]["url"]
        .as_str()
        .expect("the output's link");
    let stored = reqwest::get(link)
        .await
        .expect("open the output")
        .bytes()
        .await
        .expect("output bytes");
    assert!(!stored.is_empty());
    assert_eq!(inlined, stored.to_vec(), "the stored output's bytes");
    // The callback is, field for field, what /result/ answers for the task.
    let (status, answered) = app
        .post_json(&shop, "/result/", json!({"task_id": task_id}))
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(body, &answered);
    assert_eq!(body["prompt"], "make the sky pink", "{body:#}");
    assert_eq!(body["image_url"], app.sources.url("/image.jpg").as_str());
}
