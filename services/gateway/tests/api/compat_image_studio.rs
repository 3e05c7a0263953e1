//! Seed 003's ImageStudio routes (`/api/image-studio/*`): folders filled by uploads and URLs, a batch
//! job whose results land in the pairs, review, archive and activate, files deleted from storage,
//! settings and prompt groups feeding the prompt, and the proxy fetching only through the guarded
//! downloader.

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{
    images, spawn_with_provider, spawn_with_provider_and, status_and_json, Backend, Tenant, TestApp,
};
use crate::on_both_databases;

const SKU: &str = "SKU-RED-SHOE";

fn file(name: &str, bytes: Vec<u8>, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .expect("mime")
}

async fn upload(app: &TestApp, shop: &Tenant, form: Form) -> (u16, Value) {
    let response = app
        .call(Method::POST, "/api/image-studio/upload", shop, "shopper")
        .multipart(form)
        .send()
        .await
        .expect("upload");
    status_and_json(response).await
}

/// A studio error: the status, the SPEC §5 code and a sentence.
fn assert_studio_error(status: u16, body: &Value, http: u16, code: u64) {
    assert_eq!(status, http, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn fetch(app: &TestApp, url: &str) -> (u16, Vec<u8>) {
    let response = app.http.get(url).send().await.expect("fetch link");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

fn ids(pairs: &Value) -> Vec<String> {
    pairs
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect()
}

on_both_databases!(a_folder_is_filled_run_reviewed_and_archived);

async fn a_folder_is_filled_run_reviewed_and_archived(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;

    // A folder, then the same SKU again.
    let (status, created) = app
        .post_json(
            &shop,
            "/api/image-studio/folders",
            json!({"sku": SKU, "name": "Red shoe"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let folder = &created["folder"];
    assert_eq!(folder["sku"], SKU);
    assert_eq!(folder["name"], "Red shoe");
    assert_eq!(folder["status"], "pending");
    assert_eq!(folder["total"], 0);
    assert!(folder["thumbnail"].is_null(), "{folder}");
    let (status, again) = app
        .post_json(&shop, "/api/image-studio/folders", json!({"sku": SKU}))
        .await;
    assert_studio_error(status, &again, 409, 1005);

    // Two real photos uploaded, one source by URL.
    let coffee = images::real_photo("coffee.png");
    let rocket = images::real_photo("rocket.jpg");
    let form = Form::new()
        .text("sku", SKU)
        .part("file", file("coffee.png", coffee.clone(), "image/png"))
        .part("file", file("rocket.jpg", rocket, "image/jpeg"));
    let (status, added) = upload(&app, &shop, form).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["folder"]["total"], 2, "{added}");
    let uploaded = added["pairs"].as_array().expect("pairs");
    assert_eq!(uploaded[0]["inputName"], "coffee.png");
    assert_eq!(uploaded[1]["inputName"], "rocket.jpg");
    for p in uploaded {
        assert_eq!(p["status"], "pending", "{p}");
        assert_eq!(p["sku"], SKU);
        assert!(p["outputUrl"].is_null() && p["outputName"].is_null(), "{p}");
    }
    let (status, bytes) = fetch(&app, uploaded[0]["inputUrl"].as_str().expect("link")).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, coffee, "the source link serves the uploaded bytes");
    let by_url = app.sources.url("/image.jpg");
    let (status, added) = app
        .post_json(
            &shop,
            "/api/image-studio/upload",
            json!({"sku": SKU, "urls": [by_url]}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["pairs"][0]["inputName"], "image.jpg");
    assert_eq!(added["pairs"][0]["inputUrl"], by_url);
    assert_eq!(added["folder"]["total"], 3);

    // Prompt group and settings feed the job's prompt and size.
    let (status, saved) = app
        .post_json(
            &shop,
            "/api/image-studio/prompt-groups",
            json!({"name": "catalog", "templates": [
                {"name": "background", "content": "Pure white studio background"},
                {"name": "light", "content": "soft even light"}
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["group"]["version"], 1);
    assert_eq!(saved["group"]["isActive"], false);
    let group_id = saved["group"]["id"].as_str().expect("group id").to_string();
    let (status, active) = app
        .post_json(
            &shop,
            "/api/image-studio/prompt-groups/active",
            json!({"groupId": group_id}),
        )
        .await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["group"]["isActive"], true);
    assert_eq!(
        active["group"]["templates"][1]["content"],
        "soft even light"
    );
    let (status, groups) = app.get_json(&shop, "/api/image-studio/prompt-groups").await;
    assert_eq!(status, 200, "{groups}");
    assert_eq!(
        groups["groups"].as_array().map(Vec::len),
        Some(1),
        "{groups}"
    );
    assert_eq!(groups["groups"][0]["id"], group_id.as_str());
    assert_eq!(groups["groups"][0]["isActive"], true);
    assert_eq!(groups["groups"][0]["latestVersion"], 1);
    let (status, settings) = app
        .post_json(
            &shop,
            "/api/image-studio/settings",
            json!({"outputSize": "512x512", "additionalSettings": {"tone": "warm"}}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["outputSize"], "512x512");
    assert_eq!(settings["additionalSettings"]["tone"], "warm");
    assert_eq!(settings["activePromptGroupId"], group_id.as_str());
    // A POST changes only what it sends.
    let (_, settings) = app
        .post_json(&shop, "/api/image-studio/settings", json!({"model": ""}))
        .await;
    assert_eq!(settings["outputSize"], "512x512", "{settings}");
    let (status, read) = app.get_json(&shop, "/api/image-studio/settings").await;
    assert_eq!(status, 200);
    assert_eq!(read["additionalSettings"]["tone"], "warm", "{read}");

    // A batch job over the three pairs.
    let (status, listed) = app
        .get_json(&shop, &format!("/api/image-studio/folders/{SKU}/pairs"))
        .await;
    assert_eq!(status, 200, "{listed}");
    let pair_ids = ids(&listed["pairs"]);
    assert_eq!(pair_ids.len(), 3);
    let (status, submitted) = app
        .post_json(
            &shop,
            "/api/image-studio/jobs",
            json!({"sku": SKU, "mode": "batch"}),
        )
        .await;
    assert_eq!(status, 201, "{submitted}");
    let job = &submitted["job"];
    assert_eq!(job["mode"], "batch");
    assert_eq!(job["sku"], SKU);
    assert_eq!(job["total"], 3);
    assert_eq!(
        job["prompt"],
        "Pure white studio background\n\nsoft even light"
    );
    let item_pairs: Vec<&str> = job["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["pairId"].as_str().expect("pairId"))
        .collect();
    assert_eq!(item_pairs, pair_ids, "items follow the pairs in order");
    let job_id = job["id"].as_str().expect("job id").to_string();
    app.finish(&shop, &job_id).await;

    let (status, done) = app
        .get_json(&shop, &format!("/api/image-studio/jobs/{job_id}"))
        .await;
    assert_eq!(status, 200, "{done}");
    let done = &done["job"];
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["completed"], 3);
    assert_eq!(done["progress"], 100);
    assert_eq!(done["resultImageUrls"].as_array().map(Vec::len), Some(3));
    assert!(done["finishedAt"].is_string());
    let seen = provider.seen();
    assert_eq!(seen.len(), 3);
    for call in &seen {
        // The processor sends the prompt with its whitespace normalised (the cache key's form).
        assert_eq!(
            call.field("prompt").as_deref(),
            Some("Pure white studio background soft even light")
        );
        assert_eq!(call.field("size").as_deref(), Some("512x512"));
    }

    // Each pair holds its result, written as its task succeeded.
    let (_, listed) = app
        .get_json(&shop, &format!("/api/image-studio/folders/{SKU}/pairs"))
        .await;
    let pairs = listed["pairs"].as_array().expect("pairs");
    for (pair, item) in pairs.iter().zip(done["items"].as_array().expect("items")) {
        assert_eq!(pair["status"], "generated", "{pair}");
        assert_eq!(pair["jobId"], job_id.as_str());
        assert_eq!(pair["taskId"], item["taskId"]);
        let (status, bytes) = fetch(&app, pair["outputUrl"].as_str().expect("output")).await;
        assert_eq!(status, 200);
        assert!(images::decode(&bytes).width() > 0, "the result is an image");
    }
    assert_eq!(pairs[0]["outputName"], "coffee_result.png");
    assert_eq!(listed["folder"]["generated"], 3);
    let (_, generated) = app
        .get_json(
            &shop,
            &format!("/api/image-studio/folders/{SKU}/pairs?hasResult=false"),
        )
        .await;
    assert_eq!(generated["pairs"].as_array().map(Vec::len), Some(0));

    // Listed, and its log readable.
    let (status, jobs) = app
        .get_json(&shop, &format!("/api/image-studio/jobs?sku={SKU}"))
        .await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(ids(&jobs["jobs"]), vec![job_id.clone()]);
    let (_, running) = app
        .get_json(&shop, "/api/image-studio/jobs?status=processing")
        .await;
    assert_eq!(running["jobs"].as_array().map(Vec::len), Some(0));
    let (status, logs) = app
        .get_json(&shop, &format!("/api/image-studio/job-logs/{job_id}"))
        .await;
    assert_eq!(status, 200, "{logs}");
    assert!(
        logs["logs"].as_array().is_some_and(|l| !l.is_empty()),
        "{logs}"
    );

    // Review: one, then the rest; archive only once all are approved.
    let (status, reviewed) = app
        .post_json(
            &shop,
            "/api/image-studio/review/approve",
            json!({"sku": SKU, "pairId": pair_ids[0]}),
        )
        .await;
    assert_eq!(status, 200, "{reviewed}");
    assert_eq!(reviewed["pair"]["status"], "approved");
    assert_eq!(reviewed["folder"]["approved"], 1);
    assert_eq!(reviewed["folder"]["status"], "pending");
    let (status, refused) = app
        .post_json(&shop, "/api/image-studio/archive", json!({"sku": SKU}))
        .await;
    assert_studio_error(status, &refused, 400, 1003);
    let (status, reviewed) = app
        .post_json(
            &shop,
            "/api/image-studio/review/batch",
            json!({"sku": SKU, "pairIds": [pair_ids[1], pair_ids[2]]}),
        )
        .await;
    assert_eq!(status, 200, "{reviewed}");
    assert_eq!(reviewed["pairs"].as_array().map(Vec::len), Some(2));
    assert_eq!(reviewed["folder"]["status"], "approved");
    let (status, archived) = app
        .post_json(&shop, "/api/image-studio/archive", json!({"sku": SKU}))
        .await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["folder"]["status"], "archived");
    let (_, listed) = app
        .get_json(&shop, &format!("/api/image-studio/folders/{SKU}/pairs"))
        .await;
    assert!(
        listed["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .all(|p| p["status"] == "archived" && p["archived"] == true),
        "{listed}"
    );
    let (status, refused) = app
        .post_json(
            &shop,
            "/api/image-studio/jobs",
            json!({"sku": SKU, "mode": "batch"}),
        )
        .await;
    assert_studio_error(status, &refused, 400, 1003);
    let (_, folders) = app
        .get_json(&shop, "/api/image-studio/folders?status=archived")
        .await;
    assert_eq!(folders["folders"][0]["sku"], SKU, "{folders}");
    assert!(folders["folders"][0]["thumbnail"].is_string(), "{folders}");
    let (status, activated) = app
        .post_json(
            &shop,
            "/api/image-studio/archive/activate",
            json!({"sku": SKU}),
        )
        .await;
    assert_eq!(status, 200, "{activated}");
    assert_eq!(activated["folder"]["status"], "pending");
    let (_, folders) = app
        .get_json(&shop, "/api/image-studio/folders?status=archived")
        .await;
    assert_eq!(folders["folders"].as_array().map(Vec::len), Some(0));
}

on_both_databases!(a_single_job_reruns_a_pair_and_files_are_deleted);

async fn a_single_job_reruns_a_pair_and_files_are_deleted(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let form = Form::new().text("sku", "SKU-CAT").part(
        "file",
        file(
            "chelsea.png",
            images::real_photo("chelsea.png"),
            "image/png",
        ),
    );
    // The folder is made by the upload.
    let (status, added) = upload(&app, &shop, form).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["folder"]["sku"], "SKU-CAT");
    let pair_id = added["pairs"][0]["id"].as_str().expect("pair").to_string();

    // No active group and no prompt: nothing to ask the model.
    let (status, refused) = app
        .post_json(
            &shop,
            "/api/image-studio/jobs",
            json!({"sku": "SKU-CAT", "mode": "single", "pairId": pair_id}),
        )
        .await;
    assert_studio_error(status, &refused, 400, 1003);

    let mut first_output = String::new();
    for round in 0..2 {
        let (status, submitted) = app
            .post_json(
                &shop,
                "/api/image-studio/jobs",
                json!({"sku": "SKU-CAT", "mode": "custom", "pairId": pair_id,
                       "prompt": format!("  round {round}: remove the collar  ")}),
            )
            .await;
        assert_eq!(status, 201, "{submitted}");
        assert_eq!(
            submitted["job"]["prompt"],
            format!("round {round}: remove the collar")
        );
        let job_id = submitted["job"]["id"].as_str().expect("job").to_string();
        app.finish(&shop, &job_id).await;
        let (_, listed) = app
            .get_json(&shop, "/api/image-studio/folders/SKU-CAT/pairs")
            .await;
        let pair = &listed["pairs"][0];
        assert_eq!(pair["jobId"], job_id.as_str(), "{pair}");
        if round == 0 {
            first_output = pair["outputUrl"].as_str().expect("output").to_string();
        } else {
            // The earlier result is kept in the pair's history.
            let history = pair["metadata"]["history"].as_array().expect("history");
            assert_eq!(history.len(), 1, "{pair}");
            assert_ne!(pair["outputUrl"].as_str(), Some(first_output.as_str()));
        }
    }

    let (_, listed) = app
        .get_json(&shop, "/api/image-studio/folders/SKU-CAT/pairs")
        .await;
    let output = listed["pairs"][0]["outputUrl"]
        .as_str()
        .expect("output")
        .to_string();
    assert_eq!(fetch(&app, &output).await.0, 200);
    let (status, deleted) = app
        .post_json(
            &shop,
            "/api/image-studio/files/delete",
            json!({"sku": "SKU-CAT", "pairIds": [pair_id], "results": true}),
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    assert!(deleted["pairs"][0]["outputUrl"].is_null(), "{deleted}");
    assert_eq!(deleted["pairs"][0]["status"], "pending");
    assert_eq!(
        fetch(&app, &output).await.0,
        404,
        "the result is gone from storage"
    );
    let (status, removed) = app
        .post_json(
            &shop,
            "/api/image-studio/files/delete",
            json!({"sku": "SKU-CAT", "pairIds": [pair_id], "sources": true, "removePairs": true}),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removedPairIds"], json!([pair_id]));
    assert_eq!(removed["folder"]["total"], 0);
    assert_eq!(app.stored_uploads(), 0, "the uploaded source is removed");
}

on_both_databases!(bad_requests_answer_in_the_studio_shape);

async fn bad_requests_answer_in_the_studio_shape(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;

    let (status, body) = app
        .get_json(&shop, "/api/image-studio/folders/NO-SUCH/pairs")
        .await;
    assert_studio_error(status, &body, 404, 1004);
    let response = app
        .http
        .get(app.url("/api/image-studio/folders"))
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_studio_error(status, &body, 401, 1001);
    let response = app
        .call(Method::POST, "/api/image-studio/jobs", &shop, "shopper")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_studio_error(status, &body, 400, 1003);
    let (status, body) = app
        .post_json(
            &shop,
            "/api/image-studio/jobs",
            json!({"sku": "X", "mode": "sideways"}),
        )
        .await;
    assert_studio_error(status, &body, 400, 1003);
    // Files without a SKU first, and a SKU without files.
    let form = Form::new().part("file", file("a.png", images::png(8, 8), "image/png"));
    let (status, body) = upload(&app, &shop, form).await;
    assert_studio_error(status, &body, 400, 1003);
    let (status, body) = upload(&app, &shop, Form::new().text("sku", "SKU-EMPTY")).await;
    assert_studio_error(status, &body, 400, 1003);
    assert_eq!(app.stored_uploads(), 0);
    // A file that is not an image is refused by the upload itself.
    let form = Form::new().text("sku", "SKU-TXT").part(
        "file",
        file("notes.png", b"just words".to_vec(), "image/png"),
    );
    let (status, body) = upload(&app, &shop, form).await;
    assert_studio_error(status, &body, 415, 3003);

    // A job that is not a studio job is not this API's.
    let plain = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let plain_id = plain["id"].as_str().expect("id");
    let (status, body) = app
        .get_json(&shop, &format!("/api/image-studio/jobs/{plain_id}"))
        .await;
    assert_studio_error(status, &body, 404, 1004);
    let (status, body) = app
        .post_json(
            &shop,
            &format!("/api/image-studio/jobs/{plain_id}/cancel"),
            json!({}),
        )
        .await;
    assert_studio_error(status, &body, 404, 1004);
    let (_, listed) = app.get_json(&shop, "/api/image-studio/jobs").await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(0), "{listed}");
    let (status, body) = app.get_json(&shop, "/api/image-studio/jobs?limit=0").await;
    assert_studio_error(status, &body, 400, 1003);
}

on_both_databases!(a_studio_job_is_cancelled_and_refunded);

async fn a_studio_job_is_cancelled_and_refunded(backend: Backend) {
    let provider = ProviderServer::start().await;
    provider.hold();
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let (status, _) = app
        .post_json(
            &shop,
            "/api/image-studio/upload",
            json!({"sku": "SKU-HELD", "urls": [app.sources.url("/image.jpg")]}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, submitted) = app
        .post_json(
            &shop,
            "/api/image-studio/jobs",
            json!({"sku": "SKU-HELD", "mode": "custom", "prompt": "brighter"}),
        )
        .await;
    assert_eq!(status, 201, "{submitted}");
    let job_id = submitted["job"]["id"].as_str().expect("job").to_string();
    provider.wait_in_flight(1).await;
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    let charged = account["balance"].as_i64().expect("balance");
    assert!(charged < 100, "{account}");
    let (status, cancelled) = app
        .post_json(
            &shop,
            &format!("/api/image-studio/jobs/{job_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    provider.release_all();
    app.finish(&shop, &job_id).await;
    let (_, after) = app
        .get_json(&shop, &format!("/api/image-studio/jobs/{job_id}"))
        .await;
    assert_eq!(after["job"]["status"], "cancelled", "{after}");
    assert_eq!(after["job"]["items"][0]["status"], "cancelled");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 100, "refunded once: {account}");
    let (status, ledger) = app.get_json(&shop, "/v1/account/ledger").await;
    assert_eq!(status, 200, "{ledger}");
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, vec!["refund", "charge", "grant"], "{ledger}");
    // The pair is as it was.
    let (_, listed) = app
        .get_json(&shop, "/api/image-studio/folders/SKU-HELD/pairs")
        .await;
    assert_eq!(listed["pairs"][0]["status"], "pending", "{listed}");
}

on_both_databases!(the_proxy_fetches_only_through_the_guarded_downloader);

async fn the_proxy_fetches_only_through_the_guarded_downloader(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider_and(
        backend,
        &provider,
        |_| {},
        |g| g.proxy_allow_nets = vec!["127.0.0.1/32".parse().expect("cidr")],
    )
    .await;
    let shop = app.shop().await;
    let source = app.sources.url("/image.jpg");
    let (status, original) = fetch(&app, &source).await;
    assert_eq!(status, 200);

    let response = app
        .call(Method::POST, "/api/image-studio/proxy", &shop, "shopper")
        .json(&json!({"url": source}))
        .send()
        .await
        .expect("proxy");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    assert_eq!(response.bytes().await.expect("body").to_vec(), original);
    let response = app
        .call(Method::GET, "/api/image-studio/proxy", &shop, "shopper")
        .query(&[("url", app.sources.url("/redirect/2"))])
        .send()
        .await
        .expect("proxy");
    assert_eq!(response.status(), 200, "three redirects are followed");
    assert_eq!(response.bytes().await.expect("body").to_vec(), original);

    for (path, http, code) in [
        ("/not-an-image", 415, 3003),
        ("/too-large", 413, 3008),
        ("/error-500", 422, 3002),
        ("/redirect/5", 422, 3002),
    ] {
        let (status, body) = app
            .post_json(
                &shop,
                "/api/image-studio/proxy",
                json!({"url": app.sources.url(path)}),
            )
            .await;
        assert_studio_error(status, &body, http, code);
    }
    for (url, http, code) in [
        ("http://169.254.169.254/latest/meta-data", 403, 3005),
        ("http://10.1.2.3/image.jpg", 403, 3005),
        ("file:///etc/passwd", 400, 1003),
        ("not a url", 400, 1003),
    ] {
        let (status, body) = app
            .post_json(&shop, "/api/image-studio/proxy", json!({"url": url}))
            .await;
        assert_studio_error(status, &body, http, code);
    }
    // Only a signed-in caller makes the gateway fetch anything.
    let response = app
        .http
        .post(app.url("/api/image-studio/proxy"))
        .json(&json!({"url": source}))
        .send()
        .await
        .expect("proxy");
    let (status, body) = status_and_json(response).await;
    assert_studio_error(status, &body, 401, 1001);
}
