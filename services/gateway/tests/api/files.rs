//! Result links on local storage: the orchestrator mints `/v1/files/{token}` links when a job is
//! read, the gateway serves them to any plain HTTP client until they expire.

use atelier_storage::{unix_now, FileGrant, LinkSigner};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, spawn_app, status_and_json, Backend, LINK_SECRET};
use crate::on_both_databases;

on_both_databases!(result_links_open_in_a_plain_http_client);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A token with one character of its signature changed.
fn tampered(url: &str) -> String {
    let last = url.chars().last().expect("a token");
    let swapped = if last == 'A' { 'B' } else { 'A' };
    format!("{}{swapped}", &url[..url.len() - 1])
}

async fn result_links_open_in_a_plain_http_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let id = job["id"].as_str().expect("id").to_string();
    let done = app.finish(&shop, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let output = &done["tasks"][0]["outputs"][0];
    let url = output["url"].as_str().expect("url").to_string();
    let files = app.url("/v1/files/");
    assert!(url.starts_with(&files), "{url} is a gateway file link");

    // A client without any key: the link is the credential.
    let plain = reqwest::Client::new();
    let response = plain.get(&url).send().await.expect("GET link");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let sha = output["sha256"].as_str().expect("sha256");
    assert_eq!(sha256_hex(&body), sha, "the bytes are the stored output");
    assert_eq!(body.len() as u64, output["bytes"].as_u64().expect("bytes"));
    assert_eq!(headers["content-type"], "image/webp");
    assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    let cache = headers["cache-control"].to_str().expect("ascii");
    let max_age: u64 = cache
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cache-control {cache}"));
    assert!(max_age > 3000 && max_age <= 3600, "{cache}");

    // HEAD: the headers without the body.
    let head = plain.head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(head.headers()["etag"], format!("\"{sha}\"").as_str());
    assert!(head.bytes().await.expect("empty").is_empty());

    // Ranges: a slice, a suffix, one outside the file.
    let part = plain
        .get(&url)
        .header("range", "bytes=2-11")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 2-11/{}", body.len()).as_str()
    );
    assert_eq!(part.bytes().await.expect("part"), body.slice(2..12));
    let suffix = plain
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .expect("suffix");
    assert_eq!(suffix.status(), 206);
    assert_eq!(
        suffix.bytes().await.expect("suffix"),
        body.slice(body.len() - 5..)
    );
    let outside = plain
        .get(&url)
        .header("range", format!("bytes={}-", body.len()))
        .send()
        .await
        .expect("outside");
    assert_eq!(outside.status(), 416);
    assert_eq!(
        outside.headers()["content-range"],
        format!("bytes */{}", body.len()).as_str()
    );
    let fresh = plain
        .get(&url)
        .header("if-none-match", format!("\"{sha}\""))
        .send()
        .await
        .expect("conditional");
    assert_eq!(fresh.status(), 304);

    // The thumbnail has its own link.
    let thumb = &output["thumbnail"];
    let thumb_url = thumb["url"].as_str().expect("thumbnail url");
    assert!(thumb_url.starts_with(&files), "{thumb_url}");
    let response = plain.get(thumb_url).send().await.expect("thumbnail");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("thumbnail").len() as u64,
        thumb["bytes"].as_u64().expect("bytes")
    );

    // The output event of the stream carries a working link too.
    let frames = app.events(&shop, &id, None).await;
    let event_url = frames
        .iter()
        .filter_map(|f| f.data.as_ref())
        .find_map(|d| d["output"]["url"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("an output event in {frames:?}"));
    assert!(event_url.starts_with(&files), "{event_url}");
    let response = plain.get(&event_url).send().await.expect("event link");
    assert_eq!(response.status(), 200);
    assert_eq!(sha256_hex(&response.bytes().await.expect("body")), sha);

    // A tampered token is refused with 403, whoever asks.
    let (status, body) =
        status_and_json(plain.get(tampered(&url)).send().await.expect("tampered")).await;
    assert_error(status, &body, 403, 1002, "PERMISSION_DENIED");
    let (status, body) = status_and_json(
        plain
            .get(app.url("/v1/files/not-a-token"))
            .send()
            .await
            .expect("garbage"),
    )
    .await;
    assert_error(status, &body, 403, 1002, "PERMISSION_DENIED");

    // The same key under a token of another secret: 403; under an expired token: 410.
    let key = output["key"].as_str().expect("key").to_string();
    let grant = |expires_at| FileGrant {
        key: key.clone(),
        content_type: "image/webp".into(),
        expires_at,
    };
    let foreign = LinkSigner::new("some-other-secret-0123456789")
        .expect("signer")
        .mint(&grant(unix_now() + 600));
    let response = plain
        .get(app.url(&format!("/v1/files/{foreign}")))
        .send()
        .await
        .expect("foreign");
    assert_eq!(response.status(), 403);
    let ours = LinkSigner::new(LINK_SECRET).expect("signer");
    let expired = ours.mint(&grant(unix_now() - 1));
    let (status, body) = status_and_json(
        plain
            .get(app.url(&format!("/v1/files/{expired}")))
            .send()
            .await
            .expect("expired"),
    )
    .await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], 1002, "{body}");
    // And the freshly signed one works: the 410 is about time, nothing else.
    let valid = ours.mint(&grant(unix_now() + 600));
    let response = plain
        .get(app.url(&format!("/v1/files/{valid}")))
        .send()
        .await
        .expect("valid");
    assert_eq!(response.status(), 200);

    // Deleting the job: its links stop working, while a job sharing its cached objects keeps working.
    let again = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let again_id = again["id"].as_str().expect("id").to_string();
    let again = app.finish(&shop, &again_id).await;
    assert_eq!(again["tasks"][0]["from_cache"], true, "{again}");
    let again_url = again["tasks"][0]["outputs"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/jobs/{id}"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("delete");
    let (status, deleted) = status_and_json(response).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["objects_deleted"], 0, "{deleted}");
    assert_eq!(deleted["objects_kept"], 2, "{deleted}");
    let (status, body) = app.get_json(&shop, &format!("/v1/jobs/{id}")).await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");
    let response = plain.get(&again_url).send().await.expect("shared link");
    assert_eq!(response.status(), 200);
    assert_eq!(sha256_hex(&response.bytes().await.expect("body")), sha);

    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/jobs/{again_id}"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("delete");
    let (status, deleted) = status_and_json(response).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["objects_deleted"], 2, "{deleted}");
    for link in [&url, &again_url, &thumb_url.to_string()] {
        let (status, body) =
            status_and_json(plain.get(link).send().await.expect("dead link")).await;
        assert_error(status, &body, 404, 1004, "NOT_FOUND");
    }
    assert!(
        !app.objects.join(&key).exists(),
        "the object is gone from the storage folder"
    );
    // A job still running is refused with a clear message.
    let running = app
        .submit_transform(&shop, &[app.sources.url("/held/files")])
        .await;
    let running_id = running["id"].as_str().expect("id");
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/jobs/{running_id}"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("delete");
    let (status, body) = status_and_json(response).await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
    app.sources.release_held();
}
