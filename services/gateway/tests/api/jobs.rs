//! `/v1/jobs`: submit, get, list with filters, idempotency, cancel, logs.

use serde_json::json;

use crate::helpers::{assert_error, spawn_app, Backend};
use crate::on_both_databases;

on_both_databases!(a_job_runs_through_the_gateway);

async fn a_job_runs_through_the_gateway(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    assert_eq!(job["kind"], "transform");
    assert_eq!(job["state"], "queued");
    assert_eq!(job["account"], "shopper");
    assert_eq!(job["cost"], 1);
    assert_eq!(job["params"]["resize"]["width"], 320);
    assert_eq!(job["params"]["resize"]["fit"], "inside");
    assert_eq!(job["params"]["format"], "webp");
    assert_eq!(
        job["tasks"][0]["source"]["url"],
        app.sources.url("/image.jpg")
    );
    let created = job["created_at"].as_str().expect("created_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    let id = job["id"].as_str().expect("id").to_string();

    let done = app.finish(&shop, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let task = &done["tasks"][0];
    assert_eq!(task["state"], "succeeded");
    assert_eq!(task["percent"], 100);
    let output = &task["outputs"][0];
    assert_eq!(output["width"], 320);
    assert_eq!(output["content_type"], "image/webp");
    assert_eq!(output["sha256"].as_str().map(str::len), Some(64));
    assert!(output["thumbnail"]["url"].is_string(), "{output}");
    assert_eq!(task["source_info"]["format"], "jpeg");
    assert!(done["finished_at"].as_str().is_some(), "{done}");
    assert!(done["last_sequence"].as_u64().is_some_and(|s| s > 0));

    let (status, page) = app
        .get_json(
            &shop,
            "/v1/jobs?state=succeeded&kind=transform&page_size=10",
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    assert_eq!(page["next_page_token"], serde_json::Value::Null);
    let (_, empty) = app.get_json(&shop, "/v1/jobs?state=failed").await;
    assert_eq!(empty["jobs"].as_array().map(Vec::len), Some(0), "{empty}");
    let (_, later) = app
        .get_json(&shop, "/v1/jobs?created_gte=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(later["jobs"].as_array().map(Vec::len), Some(0), "{later}");
    let (_, earlier) = app
        .get_json(
            &shop,
            "/v1/jobs?created_gte=2000-01-01T00:00:00Z&created_lt=2999-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(
        earlier["jobs"].as_array().map(Vec::len),
        Some(1),
        "{earlier}"
    );

    // Cancelling a finished job changes nothing.
    let (status, same) = app
        .post_json(&shop, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["state"], "succeeded");
}

on_both_databases!(pages_and_labels_filter_the_list);

async fn pages_and_labels_filter_the_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let mut ids = Vec::new();
    for colour in ["red", "blue", "red"] {
        let (status, job) = app
            .post_json(
                &shop,
                "/v1/jobs",
                json!({
                    "kind": "transform",
                    "sources": [{"url": app.sources.url("/image.jpg")}],
                    "labels": {"colour": colour},
                }),
            )
            .await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(job["labels"]["colour"], colour);
        ids.push(job["id"].as_str().expect("id").to_string());
    }
    let (_, red) = app.get_json(&shop, "/v1/jobs?label=colour%3Dred").await;
    let red_ids: Vec<&str> = red["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    // Newest first.
    assert_eq!(red_ids, vec![ids[2].as_str(), ids[0].as_str()]);

    let (_, first) = app.get_json(&shop, "/v1/jobs?page_size=2").await;
    assert_eq!(first["jobs"].as_array().map(Vec::len), Some(2), "{first}");
    let token = first["next_page_token"].as_str().expect("a next page");
    let (_, second) = app
        .get_json(&shop, &format!("/v1/jobs?page_size=2&page_token={token}"))
        .await;
    assert_eq!(second["jobs"].as_array().map(Vec::len), Some(1), "{second}");
    assert_eq!(second["jobs"][0]["id"], ids[0].as_str());
}

on_both_databases!(idempotency_key_header_returns_the_original_and_refuses_a_different_request);

async fn idempotency_key_header_returns_the_original_and_refuses_a_different_request(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let body = json!({"kind": "transform", "sources": [{"url": app.sources.url("/image.jpg")}]});
    let send = |body: serde_json::Value| {
        app.call(reqwest::Method::POST, "/v1/jobs", &shop, "shopper")
            .header("idempotency-key", "order-7")
            .json(&body)
            .send()
    };
    let (status, first) =
        crate::helpers::status_and_json(send(body.clone()).await.expect("send")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["idempotency_key"], "order-7");
    let (status, again) = crate::helpers::status_and_json(send(body).await.expect("send")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    let other =
        json!({"kind": "transform", "sources": [{"url": app.sources.url("/small-ok.png")}]});
    let (status, conflict) =
        crate::helpers::status_and_json(send(other).await.expect("send")).await;
    assert_error(status, &conflict, 409, 1005, "IDEMPOTENCY_CONFLICT");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 99, "charged once: {account}");
}

on_both_databases!(cancel_stops_a_running_job_and_refunds_it);

async fn cancel_stops_a_running_job_and_refunds_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/stall")])
        .await;
    let id = job["id"].as_str().expect("id");
    // The processor is now holding the download open: the task runs.
    app.sources
        .wait_for(atelier_testkit::Seen::Request("/stall".into()))
        .await;
    let (status, cancelled) = app
        .post_json(&shop, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["tasks"][0]["state"], "cancelled");
    assert_eq!(cancelled["refunded"], 1);
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "{account}");
}

on_both_databases!(logs_page_through_the_jobs_log_lines);

async fn logs_page_through_the_jobs_log_lines(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let id = job["id"].as_str().expect("id");
    let events = app.events(&shop, id, None).await;
    let (status, logs) = app.get_json(&shop, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(status, 200, "{logs}");
    let from_events: Vec<&serde_json::Value> = events
        .iter()
        .filter(|f| f.event.as_deref() == Some("log"))
        .filter_map(|f| f.data.as_ref())
        .collect();
    let entries = logs["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "the attempt is logged: {logs}");
    assert_eq!(entries.len(), from_events.len(), "{logs}");
    for (entry, event) in entries.iter().zip(from_events) {
        assert_eq!(entry["sequence"], event["sequence"]);
        assert_eq!(entry["message"], event["message"]);
    }
    // One line per page: the token walks through them all, in order.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let (status, page) = app
            .get_json(
                &shop,
                &format!("/v1/jobs/{id}/logs?page_size=1&page_token={token}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["entries"].as_array().expect("entries").iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
        assert!(paged.len() <= entries.len(), "paging ends");
    }
    assert_eq!(&paged, entries);
    let (status, missing) = app
        .get_json(&shop, "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/logs")
        .await;
    assert_error(status, &missing, 404, 1004, "NOT_FOUND");
}
