//! Seed 002's image generator (`/api/v1/generate`, `/task/{id}`, `/tasks`, `/history`, `/models`,
//! `/system/info`, `/health`, the WebSocket `/generate/stream`) with requests shaped as its
//! document shows, answering its shapes, states (RETRYING included) and rate limits.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{
    images, read_frames, spawn_with_provider, spawn_with_provider_and, status_and_json, Backend,
    Tenant, TestApp, MODEL,
};
use crate::on_both_databases;

/// The document's own request.
fn cat_request() -> Value {
    json!({
        "prompt": "一只可爱的猫咪",
        "negative_prompt": "模糊, 低质量",
        "model": MODEL,
        "width": 1024,
        "height": 768,
        "num_images": 2,
        "steps": 20,
        "scale": 7.5,
        "seed": null
    })
}

on_both_databases!(a_generate_task_answers_in_its_shapes_from_pending_to_completed);

async fn a_generate_task_answers_in_its_shapes_from_pending_to_completed(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;

    let (status, created) = app
        .post_json(&shop, "/api/v1/generate", cat_request())
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert!(created["estimated_time"].is_u64(), "{created}");
    assert!(chrono::DateTime::parse_from_rfc3339(
        created["created_at"].as_str().expect("created_at")
    )
    .is_ok());
    let task_id = created["task_id"].as_str().expect("task_id").to_string();
    app.finish(&shop, &task_id).await;

    let (status, task) = app
        .get_json(&shop, &format!("/api/v1/task/{task_id}"))
        .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["task_id"], task_id.as_str());
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["progress"], 100);
    assert_eq!(task["prompt"], "一只可爱的猫咪");
    assert_eq!(task["negative_prompt"], "模糊, 低质量");
    assert_eq!(task["model"], MODEL);
    assert_eq!(
        (task["width"].as_u64(), task["height"].as_u64()),
        (Some(1024), Some(768))
    );
    assert_eq!(
        (task["num_images"].as_u64(), task["steps"].as_u64()),
        (Some(2), Some(20))
    );
    assert_eq!(task["scale"], 7.5);
    assert_eq!(task["seed"], Value::Null);
    assert_eq!(task["retry_count"], 0);
    assert!(task.get("error_message").is_none(), "{task}");
    for field in ["created_at", "started_at", "completed_at"] {
        assert!(task[field].is_string(), "{field}: {task}");
    }
    let images = task["images"].as_array().expect("images");
    assert_eq!(images.len(), 2, "{task}");
    for image in images {
        let id = image["image_id"].as_str().expect("image_id");
        assert!(id.starts_with("img_"), "{image}");
        assert_eq!(image["url"], format!("/api/v1/images/{id}"));
        assert_eq!(
            image["thumbnail_url"],
            format!("/api/v1/images/{id}/thumbnail")
        );
        assert!(image["width"].as_u64().is_some_and(|w| w > 0), "{image}");
        assert!(image["height"].as_u64().is_some_and(|h| h > 0), "{image}");
        assert!(
            image["file_size"].as_u64().is_some_and(|b| b > 0),
            "{image}"
        );
    }
    // The images' bytes, through the family's own links.
    for image in images {
        for (link, full) in [(&image["url"], true), (&image["thumbnail_url"], false)] {
            let response = app
                .call(
                    reqwest::Method::GET,
                    link.as_str().expect("link"),
                    &shop,
                    "shopper",
                )
                .send()
                .await
                .expect("image");
            assert_eq!(response.status(), 200, "{link}");
            let bytes = response.bytes().await.expect("bytes");
            let decoded = images::decode(&bytes);
            if full {
                assert_eq!(
                    bytes.len() as u64,
                    image["file_size"].as_u64().expect("size")
                );
                assert_eq!(
                    u64::from(decoded.width()),
                    image["width"].as_u64().expect("w")
                );
            }
        }
    }
    // The provider was asked for what the request said.
    let call = provider
        .seen()
        .into_iter()
        .find(|c| c.path.ends_with("/images/generations"))
        .expect("a generation call");
    assert_eq!(call.field("prompt").as_deref(), Some("一只可爱的猫咪"));
    assert_eq!(call.field("n").as_deref(), Some("2"));

    // Lists: every task, by state, and the history of finished ones.
    let (status, all) = app.get_json(&shop, "/api/v1/tasks").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        (
            all["total"].as_u64(),
            all["limit"].as_u64(),
            all["offset"].as_u64()
        ),
        (Some(1), Some(20), Some(0))
    );
    assert_eq!(all["tasks"][0]["task_id"], task_id.as_str());
    let (_, done) = app.get_json(&shop, "/api/v1/tasks?status=completed").await;
    assert_eq!(done["total"], 1, "{done}");
    let (_, waiting) = app.get_json(&shop, "/api/v1/tasks?status=pending").await;
    assert_eq!(waiting["total"], 0, "{waiting}");
    let (status, history) = app.get_json(&shop, "/api/v1/history?limit=5").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["total"], 1);
    assert_eq!(
        history["items"][0]["images"].as_array().map(Vec::len),
        Some(2)
    );
    // Deleting from the history removes the task and its images.
    let (status, deleted) = delete(&app, &shop, &format!("/api/v1/history/{task_id}")).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    let (status, _) = app
        .get_json(&shop, &format!("/api/v1/task/{task_id}"))
        .await;
    assert_eq!(status, 404);
    let first = images[0]["url"].as_str().expect("url");
    let (status, gone) = app.get_json(&shop, first).await;
    assert_eq!(status, 404, "{gone}");
    let (_, history) = app.get_json(&shop, "/api/v1/history").await;
    assert_eq!(history["total"], 0, "{history}");
    let (status, bad) = app.get_json(&shop, "/api/v1/tasks?limit=0").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"], "validation_error");

    // Jobs of other families are not its tasks; unknown ids are its 404.
    let other = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    for id in [
        other["id"].as_str().expect("id"),
        "550e8400-e29b-41d4-a716-446655440000",
        "nope",
    ] {
        let (status, missing) = app.get_json(&shop, &format!("/api/v1/task/{id}")).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(
            missing,
            json!({"error": "not_found", "message": "任务不存在", "code": 1004})
        );
    }
    let (status, missing) = app.get_json(&shop, "/api/v1/images/img_nope_0_0").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "not_found");

    // The document's validation error.
    let (status, invalid) = app
        .post_json(&shop, "/api/v1/generate", json!({"prompt": "  "}))
        .await;
    assert_eq!(status, 400, "{invalid}");
    assert_eq!(invalid["error"], "validation_error");
    assert_eq!(invalid["message"], "提示词不能为空");
    assert!(invalid["details"]["prompt"].is_string(), "{invalid}");
    let (status, preset) = app
        .post_json(
            &shop,
            "/api/v1/generate",
            json!({"prompt": "x", "size": "huge"}),
        )
        .await;
    assert_eq!(status, 400, "{preset}");
    assert!(preset["details"]["size"].is_string(), "{preset}");

    let (status, models) = app.get_json(&shop, "/api/v1/models").await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(models["models"][0]["id"], MODEL, "{models}");
    let (status, info) = app.get_json(&shop, "/api/v1/system/info").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["orchestrator"], "serving");
    assert_eq!(info["rate_limit_per_minute"], 60);
    assert!(
        info["size_presets"]
            .as_array()
            .is_some_and(|p| p.len() == 7),
        "{info}"
    );
    let health = app
        .http
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .expect("health");
    let (status, health) = status_and_json(health).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
}

on_both_databases!(a_task_waiting_to_retry_is_retrying);

async fn a_task_waiting_to_retry_is_retrying(backend: Backend) {
    let provider = ProviderServer::start().await;
    // A retry far enough away that the task is seen waiting for it.
    let app =
        spawn_with_provider_and(backend, &provider, |o| o.retry_base_seconds = 60.0, |_| {}).await;
    let shop = app.shop().await;
    provider.fail_next(1, 503);
    let (status, created) = app
        .post_json(&shop, "/api/v1/generate", cat_request())
        .await;
    assert_eq!(status, 201, "{created}");
    let task_id = created["task_id"].as_str().expect("task_id").to_string();
    // Follow the job's events until the task is waiting to retry.
    let events = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{task_id}/events"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("events");
    let frames = read_frames(events, |f| {
        f.data
            .as_ref()
            .is_some_and(|d| d["task_state"] == "retry_wait")
    })
    .await;
    assert!(
        frames.iter().any(|f| f
            .data
            .as_ref()
            .is_some_and(|d| d["task_state"] == "retry_wait")),
        "{frames:?}"
    );
    let (status, task) = app
        .get_json(&shop, &format!("/api/v1/task/{task_id}"))
        .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "retrying", "{task}");
    assert_eq!(task["retry_count"], 1, "{task}");
    assert!(
        task["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{task}"
    );
    assert!(task.get("images").is_none(), "{task}");
    let (_, retrying) = app.get_json(&shop, "/api/v1/tasks?status=retrying").await;
    assert_eq!(retrying["total"], 1, "{retrying}");

    // A task still waiting is not history yet; deleting the task cancels it.
    let (status, refused) = delete(&app, &shop, &format!("/api/v1/history/{task_id}")).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "validation_error");
    let (status, cancelled) = delete(&app, &shop, &format!("/api/v1/task/{task_id}")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (_, task) = app
        .get_json(&shop, &format!("/api/v1/task/{task_id}"))
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task["error_message"].is_string(), "{task}");
    let (status, deleted) = delete(&app, &shop, &format!("/api/v1/task/{task_id}")).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
}

async fn delete(app: &TestApp, shop: &Tenant, path: &str) -> (u16, Value) {
    let response = app
        .call(reqwest::Method::DELETE, path, shop, "shopper")
        .send()
        .await
        .expect("delete");
    status_and_json(response).await
}

async fn tasks_as(app: &TestApp, tenant: &Tenant) -> reqwest::Response {
    app.call(reqwest::Method::GET, "/api/v1/tasks", tenant, "shopper")
        .send()
        .await
        .expect("tasks")
}

on_both_databases!(past_the_rate_a_key_gets_429_with_retry_after);

async fn past_the_rate_a_key_gets_429_with_retry_after(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider_and(
        backend,
        &provider,
        |_| {},
        |g| g.generator_requests_per_minute = 2,
    )
    .await;
    let shop = app.shop().await;
    let other = app.tenant("other").await;
    app.member(&other, "shopper", 10).await;
    for _ in 0..2 {
        assert_eq!(tasks_as(&app, &shop).await.status(), 200);
    }
    let limited = tasks_as(&app, &shop).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let (_, body) = status_and_json(limited).await;
    assert_eq!(body["error"], "rate_limit_exceeded");
    assert_eq!(body["retry_after"], retry_after);
    // Another key has its own budget, and health is never limited.
    assert_eq!(tasks_as(&app, &other).await.status(), 200);
    let health = app
        .http
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

on_both_databases!(the_stream_creates_a_task_and_sends_it_until_done);

async fn the_stream_creates_a_task_and_sends_it_until_done(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let connect = || async {
        let url = app
            .url("/api/v1/generate/stream")
            .replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            format!("Bearer {}", shop.key).parse().expect("header"),
        );
        headers.insert("x-atelier-account", "shopper".parse().expect("header"));
        tokio_tungstenite::connect_async(request)
            .await
            .expect("connect")
            .0
    };
    // Every message until the server closes.
    async fn messages(
        socket: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(message) = socket.next().await {
            match message.expect("message") {
                Message::Text(text) => out.push(serde_json::from_str(&text).expect("JSON")),
                Message::Close(_) => break,
                _ => {}
            }
        }
        out
    }

    let mut socket = connect().await;
    socket
        .send(Message::Text(cat_request().to_string().into()))
        .await
        .expect("send");
    let got = messages(&mut socket).await;
    let (last, updates) = got.split_last().expect("messages");
    assert_eq!(last["type"], "done", "{got:?}");
    assert_eq!(last["task"]["status"], "completed", "{last}");
    assert_eq!(last["task"]["images"].as_array().map(Vec::len), Some(2));
    assert!(!updates.is_empty(), "{got:?}");
    assert!(updates.iter().all(|m| m["type"] == "task"), "{got:?}");
    // The first message is the task as created (the processor may have picked it up already).
    let first = &updates[0]["task"]["status"];
    assert!(first == "pending" || first == "processing", "{got:?}");
    let task_id = last["task"]["task_id"].as_str().expect("task_id");
    // The progress never goes back.
    let progress: Vec<u64> = got
        .iter()
        .filter_map(|m| m["task"]["progress"].as_u64())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");

    // Following a finished task answers at once.
    let mut socket = connect().await;
    socket
        .send(Message::Text(
            json!({ "task_id": task_id }).to_string().into(),
        ))
        .await
        .expect("send");
    let got = messages(&mut socket).await;
    assert_eq!(
        got.last().map(|m| m["type"].clone()),
        Some(json!("done")),
        "{got:?}"
    );

    // A refusal is an error message, then the close.
    let mut socket = connect().await;
    socket
        .send(Message::Text(json!({ "prompt": "" }).to_string().into()))
        .await
        .expect("send");
    let got = messages(&mut socket).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "error");
    assert_eq!(got[0]["error"], "validation_error");
    assert_eq!(got[0]["message"], "提示词不能为空");
}
