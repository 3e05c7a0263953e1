//! Seed 001's routes (`/api/task/create`, `/api/task/{taskId}`, `/api/task/list`) with requests shaped
//! as its document shows, answering `{success, data}` with its state names and codes.

use serde_json::json;

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{
    images, spawn_app, spawn_with_provider, spawn_with_provider_and, status_and_json, Backend,
    SERVICE,
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

on_both_databases!(an_outside_worker_reports_status_and_results_through_the_seed_route);

/// The document's internal `PUT /api/task/:taskId/status`: the worker takes the pending task, reports
/// its result URLs, and the task then reads `success` with Atelier's own links to the stored results.
async fn an_outside_worker_reports_status_and_results_through_the_seed_route(backend: Backend) {
    let provider = ProviderServer::start().await;
    // An API-only orchestrator: no Atelier processor takes the task before the worker does.
    let app =
        spawn_with_provider_and(backend, &provider, |o| o.dispatch_concurrency = 0, |_| {}).await;
    let shop = app.shop().await;
    let (status, created) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({
                "type": "model_pose12",
                "inputImageUrl": app.sources.url("/image.jpg"),
                "params": {"scene": "street", "category": "shoes"}
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["data"]["taskId"]
        .as_str()
        .expect("taskId")
        .to_string();
    let (_, charged) = app.get_json(&shop, "/v1/account").await;
    let path = format!("/api/task/{id}/status");
    let put = |body: serde_json::Value, key: Option<&str>| {
        let mut request = app
            .call(reqwest::Method::PUT, &path, &shop, "shopper")
            .json(&body);
        if let Some(key) = key {
            request = request.header("X-Api-Key", key);
        }
        async move { status_and_json(request.send().await.expect("request")).await }
    };

    for key in [None, Some("not-the-service-credential")] {
        let (status, body) = put(json!({"status": "processing"}), key).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], 4003);
        assert_eq!(body["message"], "权限错误：用户无权访问");
    }
    let (_, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(task["data"]["status"], "pending", "{task}");

    let (status, body) = put(json!({"status": "processing"}), Some(SERVICE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "message": "任务状态已更新：处理中"})
    );
    let (_, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(task["data"]["status"], "processing", "{task}");

    let worker_urls = vec![
        app.sources.url("/image.jpg"),
        app.sources.url("/small-ok.png"),
    ];
    let (status, body) = put(
        json!({"status": "success", "resultUrls": worker_urls}),
        Some(SERVICE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "message": "任务状态已更新：处理成功"})
    );

    let (status, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(status, 200, "{task}");
    let data = &task["data"];
    assert_eq!(data["status"], "success", "{task}");
    assert!(data["completedAt"].is_string(), "{task}");
    assert!(data.get("errorMessage").is_none(), "{task}");
    let links: Vec<String> = data["resultUrls"]
        .as_array()
        .expect("resultUrls")
        .iter()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    assert_eq!(links.len(), 2, "{task}");
    for (link, expected) in links.iter().zip([images::jpeg(), images::png(64, 48)]) {
        assert!(
            link.starts_with(&app.url("/v1/files/")),
            "an Atelier link, not the worker's: {link}"
        );
        let fetched = app.http.get(link).send().await.expect("result link");
        assert_eq!(fetched.status(), 200);
        assert_eq!(fetched.bytes().await.expect("bytes").to_vec(), expected);
    }

    // A finished task: the same report again is answered as done, another one is refused.
    let (status, body) = put(
        json!({"status": "success", "resultUrls": worker_urls}),
        Some(SERVICE),
    )
    .await;
    assert_eq!(
        (status, body["success"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (status, body) = put(
        json!({"status": "failed", "errorMessage": "too late"}),
        Some(SERVICE),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 4001, "{body}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(
        account["balance"], charged["balance"],
        "not refunded: {account}"
    );
    assert_eq!(
        provider.calls(),
        0,
        "the worker made the shots, not Atelier"
    );
}

on_both_databases!(a_failed_report_reads_failed_and_refunds_the_task);

async fn a_failed_report_reads_failed_and_refunds_the_task(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app =
        spawn_with_provider_and(backend, &provider, |o| o.dispatch_concurrency = 0, |_| {}).await;
    let shop = app.shop().await;
    let (_, created) = app
        .post_json(
            &shop,
            "/api/task/create",
            json!({"type": "model_pose12", "inputImageUrl": app.sources.url("/image.jpg")}),
        )
        .await;
    let id = created["data"]["taskId"]
        .as_str()
        .expect("taskId")
        .to_string();
    let path = format!("/api/task/{id}/status");
    for _ in 0..2 {
        let response = app
            .call(reqwest::Method::PUT, &path, &shop, "shopper")
            .header("X-Api-Key", SERVICE)
            .json(&json!({"status": "failed", "errorMessage": "内容审核未通过"}))
            .send()
            .await
            .expect("request");
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["message"], "任务状态已更新：处理失败");
    }
    let (_, task) = app.get_json(&shop, &format!("/api/task/{id}")).await;
    assert_eq!(task["data"]["status"], "failed", "{task}");
    assert_eq!(task["data"]["errorMessage"], "内容审核未通过", "{task}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "refunded once: {account}");
}
