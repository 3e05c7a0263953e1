//! Seed 001's routes (`/api/task/create`, `/api/task/{taskId}`, `/api/task/list`) with requests shaped
//! as its document shows, answering `{success, data}` with its state names and codes.

use serde_json::json;

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{
    spawn_app, spawn_with_provider, spawn_with_provider_and, status_and_json, Backend,
};
use crate::on_both_databases;

on_both_databases!(basic_clean_tasks_are_created_read_and_listed);

async fn basic_clean_tasks_are_created_read_and_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let image = app.sources.url("/image.jpg");
    let mut ids = Vec::new();
    for template in ["all", "white_bg", "matting"] {
        let (status, created) = app
            .post_json(
                &shop,
                "/api/task/create",
                json!({"type": "basic_clean", "inputImageUrl": image, "params": {"template": template}}),
            )
            .await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["success"], true);
        assert_eq!(created["data"]["type"], "basic_clean");
        assert_eq!(created["data"]["status"], "pending");
        assert!(created["data"]["createdAt"].is_string());
        ids.push(
            created["data"]["taskId"]
                .as_str()
                .expect("taskId")
                .to_string(),
        );
    }
    // A job of another kind is not a task of this API.
    let other = app
        .submit_transform(&shop, std::slice::from_ref(&image))
        .await;
    let other_id = other["id"].as_str().expect("id").to_string();
    for id in ids.iter().chain([&other_id]) {
        app.finish(&shop, id).await;
    }

    let (status, task) = app.get_json(&shop, &format!("/api/task/{}", ids[0])).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["success"], true);
    let data = &task["data"];
    assert_eq!(data["id"], ids[0].as_str());
    assert_eq!(data["type"], "basic_clean");
    assert_eq!(data["status"], "success", "{task}");
    assert_eq!(data["inputImageUrl"], image.as_str());
    assert_eq!(data["params"]["template"], "all");
    assert_eq!(
        data["resultUrls"].as_array().map(Vec::len),
        Some(3),
        "matting, white-bg, enhanced: {task}"
    );
    assert!(data["completedAt"].is_string() && data["updatedAt"].is_string());
    assert!(data.get("errorMessage").is_none());

    let (status, body) = app.get_json(&shop, &format!("/api/task/{other_id}")).await;
    assert_eq!(
        (status, body["success"].clone(), body["code"].clone()),
        (404, json!(false), json!(4004)),
        "{body}"
    );

    let (status, page) = app.get_json(&shop, "/api/task/list?limit=2&offset=0").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"]["total"], 3);
    assert_eq!(page["data"]["limit"], 2);
    assert_eq!(page["data"]["offset"], 0);
    let first: Vec<&str> = page["data"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(
        first,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    let (_, rest) = app.get_json(&shop, "/api/task/list?limit=2&offset=2").await;
    let rest: Vec<&str> = rest["data"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(rest, vec![ids[0].as_str()]);
    let (_, success) = app
        .get_json(&shop, "/api/task/list?status=success&type=basic_clean")
        .await;
    assert_eq!(success["data"]["total"], 3, "{success}");
    let (_, pending) = app.get_json(&shop, "/api/task/list?status=pending").await;
    assert_eq!(pending["data"]["total"], 0, "{pending}");
    let (_, poses) = app
        .get_json(&shop, "/api/task/list?type=model_pose12")
        .await;
    assert_eq!(poses["data"]["total"], 0, "{poses}");
    let (_, default_page) = app.get_json(&shop, "/api/task/list").await;
    assert_eq!(default_page["data"]["limit"], 10);
    assert_eq!(
        default_page["data"]["tasks"].as_array().map(Vec::len),
        Some(3)
    );
}

on_both_databases!(a_failed_task_reads_failed_with_its_message);

async fn a_failed_task_reads_failed_with_its_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let (status, created) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({"type": "basic_clean", "inputImageUrl": app.sources.url("/missing.jpg")}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["data"]["taskId"].as_str().expect("taskId");
    app.finish(&shop, id).await;
    let (_, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(task["data"]["status"], "failed", "{task}");
    assert!(
        task["data"]["errorMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{task}"
    );
    assert_eq!(task["data"]["resultUrls"], json!([]));
    let (_, failed) = app.get_json(&shop, "/api/task/list?status=failed").await;
    assert_eq!(failed["data"]["total"], 1, "{failed}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "refunded on failure: {account}");
}

on_both_databases!(its_error_codes);

async fn its_error_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let image = app.sources.url("/image.jpg");
    let check = |status: u16, body: &serde_json::Value, http: u16, code: u64| {
        assert_eq!(status, http, "{body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    };

    let (status, body) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({"type": "oil_painting", "inputImageUrl": image}),
        )
        .await;
    check(status, &body, 400, 4001);
    let (status, body) = app
        .post_json(&shop, "/api/task/create", json!({"type": "basic_clean"}))
        .await;
    check(status, &body, 400, 4001);
    let (status, body) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({"type": "basic_clean", "inputImageUrl": image, "params": {"template": "sepia"}}),
        )
        .await;
    check(status, &body, 400, 4001);
    let (status, body) = app.get_json(&shop, "/api/task/list?limit=0").await;
    check(status, &body, 400, 4001);
    let (status, body) = app.get_json(&shop, "/api/task/list?status=done").await;
    check(status, &body, 400, 4001);
    let (status, body) = app
        .get_json(&shop, &format!("/api/task/{}", uuid::Uuid::new_v4()))
        .await;
    check(status, &body, 404, 4004);

    // The document's model_pose12 example: no processor offers pose sets here (no model provider).
    let (status, body) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({
                "type": "model_pose12",
                "inputImageUrl": image,
                "params": {"scene": "studio", "category": "dress", "productDescription": "优雅连衣裙"}
            }),
        )
        .await;
    check(status, &body, 422, 4001);

    let (status, body) = status_and_json(
        app.http
            .get(app.url("/api/task/list"))
            .bearer_auth("atl_wrong")
            .send()
            .await
            .expect("send"),
    )
    .await;
    check(status, &body, 401, 4003);

    // No such user: its 1004 用户不存在; a user without membership: its 1002; a member without
    // quota: its 1003. Each with the document's words.
    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/api/task/create", &shop, "visitor")
            .json(&json!({"type": "basic_clean", "inputImageUrl": image}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    check(status, &body, 404, 1004);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("用户不存在")),
        "{body}"
    );
    app.member(&shop, "lapsed", 0).await;
    let mut accounts = app.accounts.clone();
    accounts
        .set_membership(crate::helpers::admin_request(
            atelier_proto::v1::SetMembershipRequest {
                tenant_id: shop.id.clone(),
                account: "lapsed".into(),
                active: false,
                expires_at: None,
            },
        ))
        .await
        .expect("membership off");
    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/api/task/create", &shop, "lapsed")
            .json(&json!({"type": "basic_clean", "inputImageUrl": image}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    check(status, &body, 402, 1002);
    assert_eq!(body["message"], "会员错误：非会员用户", "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    app.member(&shop, "broke", 0).await;
    let (status, body) = status_and_json(
        app.call(reqwest::Method::POST, "/api/task/create", &shop, "broke")
            .json(&json!({"type": "basic_clean", "inputImageUrl": image}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    check(status, &body, 402, 1003);
}

on_both_databases!(model_pose12_makes_twelve_shots_on_a_model_provider);

async fn model_pose12_makes_twelve_shots_on_a_model_provider(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let (status, created) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({
                "type": "model_pose12",
                "inputImageUrl": app.sources.url("/image.jpg"),
                "params": {"scene": "studio", "category": "dress", "productDescription": "优雅连衣裙"}
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["data"]["type"], "model_pose12");
    let id = created["data"]["taskId"].as_str().expect("taskId");
    app.finish(&shop, id).await;
    let (status, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(status, 200, "{task}");
    let data = &task["data"];
    assert_eq!(data["status"], "success", "{task}");
    assert_eq!(
        data["resultUrls"].as_array().map(Vec::len),
        Some(12),
        "{task}"
    );
    assert_eq!(data["params"]["scene"], "studio");
    assert_eq!(data["params"]["category"], "dress");
    assert_eq!(data["params"]["productDescription"], "优雅连衣裙");
    let (_, listed) = app
        .get_json(&shop, "/api/task/list?type=model_pose12")
        .await;
    assert_eq!(listed["data"]["total"], 1, "{listed}");
    assert_eq!(provider.calls(), 12);
}

on_both_databases!(model_pose12_is_charged_as_the_seed_charged_it);

async fn balance(
    app: &crate::helpers::TestApp,
    shop: &crate::helpers::Tenant,
) -> serde_json::Value {
    app.get_json(shop, "/v1/account").await.1["balance"].clone()
}

async fn model_pose12_is_charged_as_the_seed_charged_it(backend: Backend) {
    let provider = ProviderServer::start().await;
    let pose12 = |app: &crate::helpers::TestApp| {
        json!({
            "type": "model_pose12",
            "inputImageUrl": app.sources.url("/image.jpg"),
            "params": {"scene": "studio", "category": "dress"}
        })
    };
    // Nothing runs: the charge at submit is what is looked at.
    let app =
        spawn_with_provider_and(backend, &provider, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let shop = app.shop().await;
    let (status, created) = app.post_json(&shop, "/api/task/create", pose12(&app)).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        balance(&app, &shop).await,
        99,
        "one unit per model_pose12 task"
    );
    let (status, job) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({
                "kind": "pose_set",
                "params": {"scene": "studio", "category": "dress"},
                "sources": [{"url": app.sources.url("/image.jpg")}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["cost"], 12, "a pose set through /v1/jobs: {job}");
    assert_eq!(job["family"], serde_json::Value::Null);
    assert_eq!(balance(&app, &shop).await, 87);

    // The operator sets the family's price.
    let app = spawn_with_provider_and(
        backend,
        &provider,
        |c| {
            c.dispatch_concurrency = 0;
            c.family_prices = vec!["task_api:pose_set=12".into()];
        },
        |_| {},
    )
    .await;
    let shop = app.shop().await;
    let (status, created) = app.post_json(&shop, "/api/task/create", pose12(&app)).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(balance(&app, &shop).await, 88, "twelve units as configured");
    let id = created["data"]["taskId"].as_str().expect("taskId");
    let (_, job) = app.get_json(&shop, &format!("/v1/jobs/{id}")).await;
    assert_eq!(
        (job["cost"].clone(), job["family"].clone()),
        (json!(12), json!("task_api"))
    );
}
