//! `/console`: its assets and headers, and the whole page in Debian's headless Chromium driven by
//! `tests/browser/console.mjs` (playwright-core) against the real stack with a stand-in model provider.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atelier_testkit::provider::ProviderServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{spawn_app, spawn_with_provider, Backend};

/// The line `console.mjs` prints once an image shows `processing` (ATELIER_CONSOLE_HOLD=1).
const RELEASE_LINE: &str = "console: release the provider";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Real photos from scripts/install-test-photos.sh.
const PHOTOS: [&str; 3] = ["coffee.png", "chelsea.png", "rocket.jpg"];
/// Bounds a broken browser run; a passing one takes a few seconds.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_assets_are_served_with_their_types_and_a_strict_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type, marker) in [
        (
            "/console",
            "text/html; charset=utf-8",
            "<title>Atelier console</title>",
        ),
        ("/console/", "text/html; charset=utf-8", "/console/app.js"),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "/api/image-studio",
        ),
        (
            "/console/app.css",
            "text/css; charset=utf-8",
            ":focus-visible",
        ),
    ] {
        let response = app.http.get(app.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        for directive in [
            "default-src 'self'",
            "script-src 'self';",
            "connect-src 'self'",
            "img-src 'self' data: http: https:",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let etag = headers["etag"].clone();
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} lacks {marker}");
        let again = app
            .http
            .get(app.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(again.status(), 304, "{path}");
    }
    // Not a file the console has.
    let response = app
        .http
        .get(app.url("/console/other.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

/// What the browser run needs; a missing piece fails the test (it is part of `make test`).
fn browser_prerequisites() -> (PathBuf, Vec<PathBuf>) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.join("../..");
    let browser = manifest.join("tests/browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/install-test-deps.sh"
    );
    assert!(
        browser
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed in {}: run scripts/install-test-deps.sh",
        browser.display()
    );
    let photos: Vec<PathBuf> = PHOTOS
        .iter()
        .map(|name| repo.join("var/photos").join(name))
        .collect();
    for photo in &photos {
        assert!(
            photo.exists(),
            "{} is missing: run scripts/install-test-deps.sh (it runs scripts/install-test-photos.sh)",
            photo.display()
        );
    }
    (browser.join("console.mjs"), photos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_takes_a_workspace_from_upload_to_archive() {
    let (script, photos) = browser_prerequisites();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let provider = ProviderServer::start().await;
    // Held until the page shows an image `processing`: the progress it shows is the live one.
    provider.hold();
    let app = spawn_with_provider(Backend::Sqlite, &provider).await;
    let shop = app.shop().await;
    let sku = "console-check";
    let photo_list = photos
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");

    let mut child = Command::new("node")
        .arg(&script)
        .env("ATELIER_CONSOLE_URL", app.gateway.url())
        .env("ATELIER_CONSOLE_KEY", &shop.key)
        .env("ATELIER_CONSOLE_ACCOUNT", "shopper")
        .env("ATELIER_CONSOLE_PHOTOS", &photo_list)
        .env("ATELIER_CONSOLE_SKU", sku)
        .env("ATELIER_CONSOLE_SCREENS", repo.join("var/console-screens"))
        .env("ATELIER_CONSOLE_HOLD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts (Node.js 20+: run scripts/install-test-deps.sh)");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");

    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut out = String::new();
        let mut released = false;
        let read_out = async {
            while let Some(line) = lines.next_line().await.expect("node's output") {
                if line.trim() == RELEASE_LINE {
                    provider.release_all();
                    released = true;
                }
                out.push_str(&line);
                out.push('\n');
            }
        };
        let mut err = String::new();
        let read_err = stderr.read_to_string(&mut err);
        let (_, read) = tokio::join!(read_out, read_err);
        read.expect("node's errors");
        let status = child.wait().await.expect("node exits");
        (status, out, err, released)
    };
    let (status, out, err, released) = tokio::time::timeout(BROWSER_DEADLINE, run)
        .await
        .expect("the browser run ended in time");
    assert!(
        status.success(),
        "console.mjs failed ({status}):\n{out}\n{err}"
    );
    assert!(
        released,
        "the page never showed an image processing:\n{out}"
    );
    assert!(out.contains("every step passed"), "{out}");

    // What the clicks did, read back through the API.
    let (code, list) = app
        .get_json(&shop, "/api/image-studio/folders?status=archived")
        .await;
    assert_eq!(code, 200, "{list}");
    let folder = list["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .find(|f| f["sku"] == sku)
        .unwrap_or_else(|| panic!("{sku} is not archived: {list}"))
        .clone();
    assert_eq!(folder["status"], "archived", "{folder}");
    assert_eq!(folder["name"], "Console check", "{folder}");
    assert_eq!(folder["total"], PHOTOS.len(), "{folder}");
    assert_eq!(folder["generated"], PHOTOS.len(), "{folder}");
    assert_eq!(folder["approved"], PHOTOS.len(), "{folder}");

    let (code, answer) = app
        .get_json(&shop, &format!("/api/image-studio/folders/{sku}/pairs"))
        .await;
    assert_eq!(code, 200, "{answer}");
    let pairs = answer["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), PHOTOS.len(), "{answer}");
    let mut names: Vec<&str> = pairs
        .iter()
        .map(|p| p["inputName"].as_str().unwrap_or_default())
        .collect();
    names.sort_unstable();
    let mut expected = PHOTOS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "{answer}");
    for pair in pairs {
        assert!(pair["outputUrl"].is_string(), "no result: {pair}");
        assert!(pair["jobId"].is_string(), "no job: {pair}");
        assert_eq!(pair["approved"], true, "{pair}");
        assert_eq!(pair["archived"], true, "{pair}");
        assert_eq!(pair["status"], "archived", "{pair}");
    }
    // One edit per photo reached the provider, all from the one batch job.
    assert_eq!(provider.calls(), PHOTOS.len() as u32);
    let job_ids: std::collections::BTreeSet<&str> =
        pairs.iter().filter_map(|p| p["jobId"].as_str()).collect();
    assert_eq!(job_ids.len(), 1, "{answer}");
    let (code, job) = app
        .get_json(
            &shop,
            &format!(
                "/api/image-studio/jobs/{}",
                job_ids.iter().next().expect("one job")
            ),
        )
        .await;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["job"]["mode"], "batch", "{job}");
    assert_eq!(job["job"]["status"], "completed", "{job}");
    let (code, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(code, 200, "{account}");
    assert!(
        account["balance"].as_i64().is_some_and(|b| b < 100),
        "the job charged nothing: {account}"
    );
}
