//! Seed 004's image-edit service (`/api/v1/image-edit/submit`, `/task/{id}`, `/statistics`) with
//! multipart forms shaped as its document's curl commands, answering its shapes.

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{images, spawn_with_provider, status_and_json, Backend, Tenant, TestApp};
use crate::on_both_databases;

const PROMPT: &str = "修复面部瑕疵和皱纹";

fn image(name: &str, bytes: Vec<u8>) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("image/png")
        .expect("mime")
}

/// `curl -F "images=@…" -F "edit_type=enhance" -F "edit_params={\"prompt\":…}"`.
fn form(files: Vec<Part>, edit_type: &str, edit_params: &str) -> Form {
    let mut form = Form::new();
    for part in files {
        form = form.part("images", part);
    }
    form.text("edit_type", edit_type.to_string())
        .text("edit_params", edit_params.to_string())
}

async fn submit(app: &TestApp, shop: &Tenant, form: Form) -> (u16, Value) {
    let response = app
        .call(
            reqwest::Method::POST,
            "/api/v1/image-edit/submit",
            shop,
            "shopper",
        )
        .multipart(form)
        .send()
        .await
        .expect("submit");
    status_and_json(response).await
}

on_both_databases!(images_are_edited_one_call_each_and_repeats_come_from_the_cache);

async fn images_are_edited_one_call_each_and_repeats_come_from_the_cache(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let first = images::png(64, 48);
    let second = images::png(80, 40);
    let params = json!({ "prompt": PROMPT }).to_string();

    let (status, submitted) = submit(
        &app,
        &shop,
        form(
            vec![image("img1.png", first.clone()), image("img2.png", second)],
            "enhance",
            &params,
        ),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["total_images"], 2, "{submitted}");
    assert!(
        submitted["status"] == "pending" || submitted["status"] == "processing",
        "{submitted}"
    );
    assert_eq!(submitted["message"], "任务已提交");
    let task_id = submitted["task_id"].as_str().expect("task_id").to_string();
    app.finish(&shop, &task_id).await;

    let (status, task) = app
        .get_json(&shop, &format!("/api/v1/image-edit/task/{task_id}"))
        .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["task_id"], task_id.as_str());
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["edit_type"], "enhance");
    assert_eq!(task["total_images"], 2);
    assert_eq!(task["completed_images"], 2);
    assert_eq!(task["progress"], 100);
    assert!(task["completed_at"].is_string(), "{task}");
    let results = task["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for (i, (r, name)) in results.iter().zip(["img1.png", "img2.png"]).enumerate() {
        assert_eq!(r["index"], i, "{r}");
        assert_eq!(r["filename"], name, "{r}");
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["from_cache"], false, "{r}");
        assert!(
            r["result_url"].as_str().is_some_and(|u| !u.is_empty()),
            "{r}"
        );
    }
    // One model call per image, each with the form's prompt.
    let edits: Vec<_> = provider
        .seen()
        .into_iter()
        .filter(|c| c.path.ends_with("/images/edits"))
        .collect();
    assert_eq!(edits.len(), 2);
    assert!(edits
        .iter()
        .all(|c| c.field("prompt").as_deref() == Some(PROMPT)));

    // The same image with the same prompt again: no model call, `from_cache: true`.
    let (status, again) = submit(
        &app,
        &shop,
        form(vec![image("same.png", first)], "enhance", &params),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let again_id = again["task_id"].as_str().expect("task_id").to_string();
    app.finish(&shop, &again_id).await;
    let (_, cached) = app
        .get_json(&shop, &format!("/api/v1/image-edit/task/{again_id}"))
        .await;
    assert_eq!(cached["status"], "completed", "{cached}");
    assert_eq!(cached["results"][0]["from_cache"], true, "{cached}");
    assert_eq!(cached["results"][0]["filename"], "same.png");
    let calls_after = provider
        .seen()
        .into_iter()
        .filter(|c| c.path.ends_with("/images/edits"))
        .count();
    assert_eq!(calls_after, 2, "the repeat called the model");

    // Jobs of other families are not tasks of this service.
    let other = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let (status, missing) = app
        .get_json(
            &shop,
            &format!(
                "/api/v1/image-edit/task/{}",
                other["id"].as_str().expect("id")
            ),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["code"], 1004);
    assert_eq!(missing["detail"], "任务不存在");

    let (status, stats) = app.get_json(&shop, "/api/v1/image-edit/statistics").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({
            "total_tasks": 2,
            "total_images": 3,
            "completed_tasks": 2,
            "failed_tasks": 0,
            "completed_images": 3,
            "failed_images": 0,
            "cache_hits": 1,
            "cache_misses": 2,
            "cache_hit_rate": 33.33,
            "completion_rate": 100.0,
            "failure_rate": 0.0,
        })
    );
}

on_both_databases!(bad_forms_are_refused_with_the_field_and_nothing_is_charged);

async fn bad_forms_are_refused_with_the_field_and_nothing_is_charged(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let png = || image("a.png", images::png(32, 32));
    let cases = [
        (form(vec![], "enhance", r#"{"prompt": "x"}"#), "images"),
        (form(vec![png()], "", r#"{"prompt": "x"}"#), "edit_type"),
        (
            form(vec![png()], "enhance", r#"{"prompt": " "}"#),
            "edit_params.prompt",
        ),
        (form(vec![png()], "enhance", "{not json"), "edit_params"),
    ];
    for (form, field) in cases {
        let (status, body) = submit(&app, &shop, form).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["code"], 1003, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{field}:"))),
            "{body}"
        );
    }
    // Not a form at all.
    let response = app
        .call(
            reqwest::Method::POST,
            "/api/v1/image-edit/submit",
            &shop,
            "shopper",
        )
        .json(&json!({"edit_type": "enhance"}))
        .send()
        .await
        .expect("submit");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 1003);

    let (status, stats) = app.get_json(&shop, "/api/v1/image-edit/statistics").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total_tasks"], 0, "{stats}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "{account}");
    assert_eq!(provider.calls(), 0);

    let (status, body) = app
        .get_json(&shop, "/api/v1/image-edit/task/not-a-uuid")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 1003);
}
