//! WebP through `/v1/jobs`: lossy at the quality by default, lossless when the params ask for it,
//! and lossless JPEG refused at submit.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, Backend, Tenant, TestApp};
use crate::on_both_databases;

on_both_databases!(webp_outputs_are_lossy_unless_lossless_is_asked_for);

/// The chunk after the RIFF/WEBP header: `VP8 ` for lossy, `VP8L` for lossless.
fn webp_frame(data: &[u8]) -> String {
    assert_eq!(&data[0..4], b"RIFF");
    assert_eq!(&data[8..12], b"WEBP");
    String::from_utf8_lossy(&data[12..16]).into_owned()
}

/// Runs a transform job with `params` on the source JPEG; returns its params as the gateway echoes
/// them and the stored output's bytes.
async fn run(app: &TestApp, shop: &Tenant, params: Value) -> (Value, Vec<u8>) {
    let (status, job) = app
        .post_json(
            shop,
            "/v1/jobs",
            json!({
                "kind": "transform",
                "params": params,
                "sources": [{"url": app.sources.url("/image.jpg")}],
            }),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    let id = job["id"].as_str().expect("id");
    let done = app.finish(shop, id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let output = &done["tasks"][0]["outputs"][0];
    assert_eq!(output["content_type"], "image/webp", "{output}");
    let key = output["key"].as_str().expect("key");
    let data = std::fs::read(app.objects.join(key)).expect("stored output");
    (job["params"].clone(), data)
}

async fn webp_outputs_are_lossy_unless_lossless_is_asked_for(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;

    let (params, lossy) = run(&app, &shop, json!({"format": "webp", "quality": 70})).await;
    assert_eq!(params["lossless"], false, "{params}");
    assert_eq!(webp_frame(&lossy), "VP8 ");

    let lossless_params = json!({"format": "webp", "quality": 70, "lossless": true});
    let (params, lossless) = run(&app, &shop, lossless_params).await;
    assert_eq!(params["lossless"], true, "{params}");
    assert_eq!(webp_frame(&lossless), "VP8L");

    let (status, body) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({
                "kind": "transform",
                "params": {"format": "jpeg", "lossless": true},
                "sources": [{"url": app.sources.url("/image.jpg")}],
            }),
        )
        .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    assert!(body.to_string().contains("lossless"), "{body}");
}
