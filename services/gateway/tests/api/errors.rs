//! Error JSON and statuses for bad input, request ids and CORS.

use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, status_and_json, Backend};
use crate::on_both_databases;

on_both_databases!(bad_input_gets_the_spec_code_and_status);

async fn bad_input_gets_the_spec_code_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;

    let (status, body) = app
        .get_json(&shop, "/v1/jobs/0190a1b2-0000-7000-8000-000000000000")
        .await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");

    let (status, body) = status_and_json(
        app.http
            .get(app.url("/v1/jobs"))
            .bearer_auth("atl_not-a-real-key")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 401, 1001, "UNAUTHENTICATED");
    let (status, body) = status_and_json(
        app.http
            .get(app.url("/v1/account"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 401, 1001, "UNAUTHENTICATED");

    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/jobs", &shop, "shopper")
            .header("content-type", "application/json")
            .body("{\"kind\": \"transform\", ")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");

    let (status, body) = app
        .post_json(&shop, "/v1/jobs", json!({"kind": "sculpture"}))
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");

    let (status, body) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({"kind": "transform", "params": {"rotate": "left"}}),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    assert_eq!(body["error"]["details"][0]["field"], "params");

    let (status, body) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({"kind": "transform", "sources": [{}]}),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    assert_eq!(body["error"]["details"][0]["field"], "sources[0]");

    // The orchestrator's own field violations come through as details.
    let sources: Vec<serde_json::Value> = (0..101)
        .map(|_| json!({"url": app.sources.url("/image.jpg")}))
        .collect();
    let (status, body) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({"kind": "transform", "sources": sources}),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    assert!(
        !body["error"]["details"]
            .as_array()
            .expect("details")
            .is_empty(),
        "{body}"
    );

    let (status, body) = app.get_json(&shop, "/v1/jobs?state=sideways").await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    let (status, body) = app.get_json(&shop, "/v1/jobs?created_gte=yesterday").await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");

    // Quota and membership errors keep their statuses.
    app.member(&shop, "poor", 0).await;
    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/jobs", &shop, "poor")
            .json(
                &json!({"kind": "transform", "sources": [{"url": app.sources.url("/image.jpg")}]}),
            )
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 402, 2002, "QUOTA_EXHAUSTED");
    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/jobs", &shop, "stranger")
            .json(
                &json!({"kind": "transform", "sources": [{"url": app.sources.url("/image.jpg")}]}),
            )
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &body, 402, 2001, "MEMBERSHIP_REQUIRED");

    let (status, body) = app.get_json(&shop, "/v2/nothing").await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");
    let (status, body) = status_and_json(
        app.call(reqwest::Method::DELETE, "/v1/jobs", &shop, "shopper")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], 1003);
}

on_both_databases!(json_bodies_over_the_limit_are_refused);

async fn json_bodies_over_the_limit_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_json_bytes = 1024).await;
    let shop = app.shop().await;
    // A job the gateway accepts, then the same job padded with whitespace past the limit: only
    // the size differs, so only the size can be why it is refused.
    let job = json!({
        "kind": "transform",
        "params": {"resize": {"width": 32, "fit": "inside"}, "format": "png"},
        "sources": [{"url": app.sources.url("/image.jpg")}],
    })
    .to_string();
    let send = |body: String| {
        app.call(reqwest::Method::POST, "/v1/jobs", &shop, "shopper")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, accepted) = status_and_json(send(job.clone()).await.expect("request")).await;
    assert_eq!(status, 200, "{accepted}");
    let padded = format!("{job}{}", " ".repeat(2048));
    let (status, body) = status_and_json(send(padded).await.expect("request")).await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be read"), "{message}");
    let (_, list) = app.get_json(&shop, "/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1), "{list}");
}

on_both_databases!(request_ids_are_echoed_or_made_and_cors_answers_allowed_origins);

async fn request_ids_are_echoed_or_made_and_cors_answers_allowed_origins(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.cors_origins = vec!["https://shop.example".into()];
    })
    .await;
    let sent = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(sent.headers()["x-request-id"], "req-abc-123");
    let made = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("send");
    let id = made.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/jobs"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,x-atelier-account",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let foreign = app
        .http
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
