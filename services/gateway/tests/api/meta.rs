//! `/v1/account`, `/healthz`, `/openapi.json`, `/v1/models`, `/v1/stats`.

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

on_both_databases!(account_health_and_openapi);

async fn account_health_and_openapi(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let (status, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["external_id"], "shopper");
    assert_eq!(account["tenant_id"], shop.id.as_str());
    assert_eq!(account["balance"], 100);
    assert_eq!(account["member"], true);
    assert_eq!(account["active_jobs"], 0);

    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["orchestrator"], "serving");

    let doc: serde_json::Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/logs",
        "/v1/uploads",
        "/v1/account",
        "/v1/models",
        "/v1/stats",
        "/healthz",
        "/submit/",
        "/result/",
        "/batch_submit/",
        "/batch_result/",
        "/status/",
        "/api/task/create",
        "/api/task/{task_id}",
        "/api/task/list",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let kinds = &doc["components"]["schemas"]["JobKind"]["enum"];
    assert_eq!(
        kinds,
        &serde_json::json!(["transform", "basic_clean", "edit", "generate", "pose_set"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_unavailable_without_an_orchestrator() {
    let mut config = atelier_gateway::Config::new("http://127.0.0.1:9");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let gateway = atelier_gateway::spawn(config).await.expect("gateway");
    let response = reqwest::get(format!("{}/healthz", gateway.url()))
        .await
        .expect("healthz");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["orchestrator"], "unreachable");
    let (status, err) = crate::helpers::status_and_json(
        reqwest::Client::new()
            .get(format!("{}/v1/account", gateway.url()))
            .bearer_auth("atl_x")
            .send()
            .await
            .expect("account"),
    )
    .await;
    crate::helpers::assert_error(status, &err, 503, 1009, "UNAVAILABLE");
}

on_both_databases!(models_and_stats);

async fn models_and_stats(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    app.finish(&shop, job["id"].as_str().expect("id")).await;

    let (status, models) = app.get_json(&shop, "/v1/models").await;
    assert_eq!(status, 200, "{models}");
    assert!(models["models"].is_array(), "{models}");

    let (status, stats) = app.get_json(&shop, "/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    let succeeded = stats["by_state"]
        .as_array()
        .expect("by_state")
        .iter()
        .find(|s| s["state"] == "succeeded")
        .map(|s| s["jobs"].clone());
    assert_eq!(succeeded, Some(serde_json::json!(1)), "{stats}");
    let transform = stats["by_kind"]
        .as_array()
        .expect("by_kind")
        .iter()
        .find(|k| k["kind"] == "transform")
        .cloned()
        .expect("transform row");
    assert_eq!(transform["jobs"], 1);
    assert_eq!(transform["succeeded"], 1);
    assert_eq!(stats["completion_rate"], 1.0);
    let (status, none) = app
        .get_json(&shop, "/v1/stats?created_gte=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{none}");
    assert!(
        none["by_state"]
            .as_array()
            .expect("by_state")
            .iter()
            .all(|s| s["jobs"] == 0),
        "{none}"
    );
}

on_both_databases!(models_and_provider_usage);

async fn models_and_provider_usage(backend: Backend) {
    let provider = atelier_testkit::provider::ProviderServer::start().await;
    let app = crate::helpers::spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let (status, models) = app.get_json(&shop, "/v1/models").await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(
        models,
        serde_json::json!({"models": [{
            "id": crate::helpers::MODEL,
            "provider": "fake",
            "kinds": ["edit", "generate", "pose_set"]
        }]})
    );

    // A generate job calls the provider once for two images: /v1/stats shows it.
    let (status, job) = app
        .post_json(
            &shop,
            "/v1/jobs",
            serde_json::json!({
                "kind": "generate",
                "params": {"prompt": "a red sneaker", "model": crate::helpers::MODEL,
                           "width": 256, "height": 256, "num_images": 2, "seed": 7},
            }),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    let done = app.finish(&shop, job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(provider.calls(), 1);
    let (status, stats) = app.get_json(&shop, "/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    let usage = stats["provider_usage"].as_array().expect("provider_usage");
    assert_eq!(usage.len(), 1, "{stats}");
    assert_eq!(usage[0]["provider"], "fake");
    assert_eq!(usage[0]["model"], crate::helpers::MODEL);
    assert_eq!(usage[0]["calls"], 1, "{stats}");
    assert_eq!(usage[0]["images"], 2, "{stats}");
    assert_eq!(usage[0]["failures"], 0, "{stats}");
    assert!(usage[0]["seconds"].as_f64().expect("seconds") > 0.0);
    let (status, none) = app
        .get_json(&shop, "/v1/stats?created_gte=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["provider_usage"], serde_json::json!([]), "{none}");
}
