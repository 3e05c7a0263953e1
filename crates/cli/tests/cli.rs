//! The `atelier` binary as a subprocess against a real processor and a real orchestrator (SQLite in a
//! temp folder), both started in the test on free ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atelier_testkit::provider::{self, ProviderServer};
use atelier_testkit::stack::{Backend, Stack, ADMIN};
use atelier_testkit::WebhookReceiver;
use serde_json::Value;

/// A running processor and orchestrator (SQLite in a temp folder) and the folder they keep their
/// data in.
type Pair = Stack;

async fn spawn_pair() -> Pair {
    spawn_pair_with(Vec::new()).await
}

/// A pair whose processor also offers the models of `providers`.
async fn spawn_pair_with(providers: Vec<atelier_processor::ProviderConfig>) -> Pair {
    spawn_pair_configured(providers, |_| {}).await
}

/// A pair with the orchestrator's configuration adjusted first.
async fn spawn_pair_configured(
    providers: Vec<atelier_processor::ProviderConfig>,
    orchestrator: impl FnOnce(&mut atelier_orchestrator::Config),
) -> Pair {
    Stack::builder(Backend::Sqlite)
        .processor(move |p| p.providers = providers)
        .orchestrator(orchestrator)
        .start()
        .await
}

/// How one run of the binary ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    fn line(&self) -> String {
        self.stdout.trim().to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {self:#?}"))
    }
}

/// Credentials of one run, passed the way a user would: environment variables.
#[derive(Clone, Copy, Default)]
struct As<'a> {
    admin: bool,
    key: Option<&'a str>,
    account: Option<&'a str>,
}

const ADMIN_ONLY: As<'static> = As {
    admin: true,
    key: None,
    account: None,
};

async fn atelier(endpoint: &str, who: As<'_>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    command
        .args(args)
        .kill_on_drop(true)
        .env("ATELIER_ENDPOINT", endpoint);
    for var in [
        "ATELIER_API_KEY",
        "ATELIER_ACCOUNT",
        "ATELIER_ADMIN_TOKEN",
        "ATELIER_JSON",
    ] {
        command.env_remove(var);
    }
    if who.admin {
        command.env("ATELIER_ADMIN_TOKEN", ADMIN);
    }
    if let Some(key) = who.key {
        command.env("ATELIER_API_KEY", key);
    }
    if let Some(account) = who.account {
        command.env("ATELIER_ACCOUNT", account);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("atelier {args:?} did not finish in time"))
        .expect("run atelier");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The model the fake provider serves.
const MODEL: &str = "cli-test-image-1";

/// The shared fake model provider (OpenAI Images API on 127.0.0.1) and the processor's configuration
/// for it. The server is returned so that it lives as long as the test.
async fn fake_provider() -> (ProviderServer, atelier_processor::ProviderConfig) {
    let server = ProviderServer::start().await;
    let config = atelier_processor::ProviderConfig::new(
        "fake",
        &server.base_url(),
        Some(provider::API_KEY),
        vec![atelier_processor::ModelConfig {
            id: MODEL.into(),
            kinds: vec![
                atelier_processor::ModelKind::Edit,
                atelier_processor::ModelKind::Generate,
                atelier_processor::ModelKind::PoseSet,
            ],
        }],
    );
    (server, config)
}

/// A product-like JPEG: a dark red box on a plain light background.
fn product_jpeg(dir: &Path) -> PathBuf {
    let (width, height) = (320, 240);
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let inside = x > width / 4 && x < width * 3 / 4 && y > height / 5 && y < height * 4 / 5;
        image::Rgb(if inside {
            [170, 30, 40]
        } else {
            [245, 245, 245]
        })
    });
    let path = dir.join("product.jpg");
    img.save(&path).expect("write JPEG");
    path
}

/// A tenant with a tenant-wide key and one account, set up through the CLI's admin commands.
async fn tenant_with_account(
    endpoint: &str,
    account: &str,
    member: bool,
    units: i64,
) -> (String, String) {
    let tenant = atelier(
        endpoint,
        ADMIN_ONLY,
        &["admin", "create-tenant", "cli-shop"],
    )
    .await
    .ok()
    .line();
    assert!(!tenant.is_empty());
    let key = atelier(endpoint, ADMIN_ONLY, &["admin", "create-key", &tenant])
        .await
        .ok()
        .line();
    assert!(key.starts_with("atl_"), "{key}");
    atelier(
        endpoint,
        ADMIN_ONLY,
        &["admin", "upsert-account", &tenant, account],
    )
    .await
    .ok();
    if member {
        let run = atelier(
            endpoint,
            ADMIN_ONLY,
            &["admin", "membership", &tenant, account, "--active", "true"],
        )
        .await
        .ok();
        assert!(run.stdout.contains("membership   active"), "{run:#?}");
    }
    if units > 0 {
        let run = atelier(
            endpoint,
            ADMIN_ONLY,
            &[
                "admin",
                "grant",
                &tenant,
                account,
                &units.to_string(),
                "--reason",
                "test",
            ],
        )
        .await
        .ok();
        assert!(
            run.stdout.contains(&format!("balance      {units}")),
            "{run:#?}"
        );
    }
    (tenant, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_uploads_cleans_transforms_and_runs_out_of_quota() {
    let pair = spawn_pair().await;
    let endpoint = pair.orchestrator.url();
    let (_tenant, key) = tenant_with_account(&endpoint, "shopper", true, 2).await;
    let shopper = As {
        admin: false,
        key: Some(&key),
        account: Some("shopper"),
    };
    let photo = product_jpeg(pair.root.path());
    let photo = photo.to_str().expect("utf-8 path");

    let upload = atelier(&endpoint, shopper, &["upload", photo])
        .await
        .ok()
        .line();
    assert!(
        !upload.is_empty() && !upload.contains(char::is_whitespace),
        "{upload}"
    );

    // A local file as source: uploaded, submitted, watched to the end.
    let run = atelier(
        &endpoint,
        shopper,
        &[
            "submit",
            "basic-clean",
            photo,
            "--template",
            "white-bg",
            "--watch",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("white-bg.jpg"), "{run:#?}");
    let job_id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("job "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a `job <id>` line")
        .to_string();

    let job = atelier(&endpoint, shopper, &["--json", "get", &job_id])
        .await
        .ok()
        .json();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["kind"], "basic_clean");
    let output = &job["tasks"][0]["outputs"][0];
    assert_eq!(output["name"], "white-bg.jpg", "{job:#}");
    let url = output["url"].as_str().expect("url");
    let path = url
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("a file:// URL: {url}"));
    assert!(
        std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "{path} holds the output"
    );

    let run = atelier(&endpoint, shopper, &["account"]).await.ok();
    assert!(run.stdout.contains("balance      1\n"), "{run:#?}");

    // Transform an earlier upload, as JSON: the job, one line per event, the final job.
    let run = atelier(
        &endpoint,
        shopper,
        &[
            "submit",
            "transform",
            &format!("upload:{upload}"),
            "--width",
            "64",
            "--format",
            "png",
            "--label",
            "run=cli",
            "--json",
            "--watch",
        ],
    )
    .await
    .ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?} is not JSON: {e}")))
        .collect();
    assert!(lines.len() >= 3, "{run:#?}");
    assert_eq!(lines[0]["kind"], "transform");
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|e| e["type"].is_string()),
        "{run:#?}"
    );
    let done = &lines[lines.len() - 1];
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["labels"]["run"], "cli");
    assert_eq!(
        done["tasks"][0]["outputs"][0]["content_type"], "image/png",
        "{done:#}"
    );
    assert_eq!(done["tasks"][0]["outputs"][0]["width"], 64, "{done:#}");

    let account = atelier(&endpoint, shopper, &["--json", "account"])
        .await
        .ok()
        .json();
    assert_eq!(account["balance"], 0, "{account:#}");

    let run = atelier(
        &endpoint,
        shopper,
        &["submit", "basic-clean", &format!("upload:{upload}")],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("error 2002 QUOTA_EXHAUSTED"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("hint: "), "{run:#?}");

    let ledger = atelier(&endpoint, shopper, &["--json", "ledger"])
        .await
        .ok()
        .json();
    let entries = ledger["entries"].as_array().expect("entries");
    assert_eq!(
        entries
            .iter()
            .filter_map(|e| e["amount"].as_i64())
            .sum::<i64>(),
        0,
        "{ledger:#}"
    );
    assert!(entries.iter().any(|e| e["kind"] == "grant"), "{ledger:#}");

    let jobs = atelier(
        &endpoint,
        shopper,
        &["--json", "list", "--kind", "transform"],
    )
    .await
    .ok()
    .json();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs:#}");

    // Cancelling a finished job is a no-op that shows it.
    let run = atelier(&endpoint, shopper, &["cancel", &job_id]).await.ok();
    assert!(run.stdout.contains("SUCCEEDED"), "{run:#?}");

    pair.orchestrator.stop().await.expect("orchestrator stops");
    pair.processor.stop().await.expect("processor stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_their_code_a_hint_and_an_exit_status() {
    let pair = spawn_pair().await;
    let endpoint = pair.orchestrator.url();
    let (tenant, key) = tenant_with_account(&endpoint, "visitor", false, 5).await;

    let wrong = As {
        admin: false,
        key: Some("atl_not-a-real-key"),
        account: Some("visitor"),
    };
    let run = atelier(&endpoint, wrong, &["account"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("error 1001 UNAUTHENTICATED"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("--key"), "{run:#?}");

    let visitor = As {
        admin: false,
        key: Some(&key),
        account: Some("visitor"),
    };
    let photo = product_jpeg(pair.root.path());
    let photo = photo.to_str().expect("utf-8 path");
    let run = atelier(
        &endpoint,
        visitor,
        &["submit", "transform", photo, "--width", "100"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("error 2001 MEMBERSHIP_REQUIRED"),
        "{run:#?}"
    );

    let run = atelier(
        &endpoint,
        visitor,
        &["get", "00000000-0000-0000-0000-000000000000"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.starts_with("error 1004 NOT_FOUND"), "{run:#?}");

    let run = atelier(
        &endpoint,
        visitor,
        &["submit", "transform", "/no/such/photo.jpg"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("cannot open /no/such/photo.jpg"),
        "{run:#?}"
    );

    // Usage mistakes: exit 2, nothing sent.
    let run = atelier(
        &endpoint,
        visitor,
        &["submit", "transform", photo, "--template", "all"],
    )
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    let run = atelier(&endpoint, visitor, &["submit", "resize", photo]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    let run = atelier(&endpoint, As::default(), &["admin", "create-tenant", "x"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--admin-token"), "{run:#?}");

    // A membership that ended in the past does not count.
    atelier(
        &endpoint,
        ADMIN_ONLY,
        &[
            "admin",
            "membership",
            &tenant,
            "visitor",
            "--active",
            "true",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ],
    )
    .await
    .ok();
    let run = atelier(&endpoint, visitor, &["submit", "transform", photo]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("error 2001 MEMBERSHIP_REQUIRED"),
        "{run:#?}"
    );
    let run = atelier(
        &endpoint,
        ADMIN_ONLY,
        &["account", "--tenant", &tenant, "--account", "visitor"],
    )
    .await
    .ok();
    assert!(
        run.stdout
            .contains("membership   expired 2001-01-01T00:00:00Z"),
        "{run:#?}"
    );

    // Health of both services, and of a port nobody listens on.
    let run = atelier(&endpoint, As::default(), &["health"]).await.ok();
    assert_eq!(run.line(), "SERVING");
    let processor = pair.processor.url();
    let run = atelier(
        &endpoint,
        As::default(),
        &["health", "--endpoint", &processor, "--wait", "5"],
    )
    .await
    .ok();
    assert_eq!(run.line(), "SERVING");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let run = atelier(
        &endpoint,
        As::default(),
        &["health", "--endpoint", &closed.to_string(), "--wait", "0.5"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("not SERVING"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_generates_images_from_a_prompt_and_watches_them_arrive() {
    let (provider, config) = fake_provider().await;
    let pair = spawn_pair_with(vec![config]).await;
    let endpoint = pair.orchestrator.url();
    let (_tenant, key) = tenant_with_account(&endpoint, "artist", true, 5).await;
    let artist = As {
        admin: false,
        key: Some(&key),
        account: Some("artist"),
    };

    // Mistakes are refused before any call: exit 2, nothing charged.
    let photo = product_jpeg(pair.root.path());
    let photo = photo.to_str().expect("utf-8 path");
    let run = atelier(
        &endpoint,
        artist,
        &["submit", "generate", photo, "--prompt", "a hat"],
    )
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("generate takes no sources"), "{run:#?}");
    let run = atelier(&endpoint, artist, &["submit", "generate", "--width", "256"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("generate needs --prompt"), "{run:#?}");
    let run = atelier(
        &endpoint,
        artist,
        &["submit", "generate", "--prompt", "a hat", "--fit", "cover"],
    )
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr
            .contains("--fit is an option of transform, not generate"),
        "{run:#?}"
    );

    let run = atelier(
        &endpoint,
        artist,
        &[
            "submit",
            "generate",
            "--prompt",
            "a red sneaker on white",
            "--model",
            MODEL,
            "--width",
            "256",
            "--height",
            "256",
            "--num-images",
            "2",
            "--seed",
            "7",
            "--watch",
        ],
    )
    .await
    .ok();
    let header = run.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("job ") && header.contains("  generate  "),
        "{run:#?}"
    );
    let job_id = header
        .strip_prefix("job ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a `job <id>` line")
        .to_string();
    assert!(run.stdout.contains("SUCCEEDED"), "{run:#?}");

    let job = atelier(&endpoint, artist, &["--json", "get", &job_id])
        .await
        .ok()
        .json();
    assert_eq!(job["kind"], "generate", "{job:#}");
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["cost"], 2, "{job:#}");
    assert_eq!(job["params"]["prompt"], "a red sneaker on white");
    assert_eq!(job["params"]["model"], MODEL);
    assert_eq!(job["params"]["seed"], 7);
    assert_eq!(job["tasks"][0]["source"], Value::Null, "{job:#}");
    let outputs = job["tasks"][0]["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2, "{job:#}");
    assert!(
        outputs
            .iter()
            .all(|o| o["width"] == 256 && o["height"] == 256),
        "{job:#}"
    );

    let jobs = atelier(&endpoint, artist, &["--json", "list", "--kind", "generate"])
        .await
        .ok()
        .json();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs:#}");

    // `stats` shows what the provider calls used.
    assert_eq!(provider.calls(), 1);
    let stats = atelier(&endpoint, artist, &["--json", "stats"])
        .await
        .ok()
        .json();
    let usage = stats["provider_usage"].as_array().expect("provider_usage");
    assert_eq!(usage.len(), 1, "{stats:#}");
    assert_eq!(
        (&usage[0]["provider"], &usage[0]["model"]),
        (&Value::from("fake"), &Value::from(MODEL)),
        "{stats:#}"
    );
    assert_eq!(
        (
            &usage[0]["calls"],
            &usage[0]["images"],
            &usage[0]["failures"]
        ),
        (&Value::from(1), &Value::from(2), &Value::from(0)),
        "{stats:#}"
    );
    let run = atelier(&endpoint, artist, &["stats"]).await.ok();
    assert!(
        run.stdout.contains(&format!(
            "provider fake model {MODEL}: 1 calls, 2 images, 0 failures"
        )),
        "{run:#?}"
    );
    let run = atelier(
        &endpoint,
        artist,
        &["stats", "--created-gte", "2999-01-01T00:00:00Z"],
    )
    .await
    .ok();
    assert!(run.stdout.contains("provider usage: none"), "{run:#?}");

    pair.orchestrator.stop().await.expect("orchestrator stops");
    pair.processor.stop().await.expect("processor stops");
    assert!(provider.calls() >= 1, "the images came from the provider");
}

/// Runs `args` until `done` accepts the run (every 100 ms, for up to 30 s).
async fn atelier_until(
    endpoint: &str,
    who: As<'_>,
    args: &[&str],
    done: impl Fn(&Run) -> bool,
) -> Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = atelier(endpoint, who, args).await.ok();
        if done(&run) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "atelier {args:?} never got there: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_registered_delivered_listed_and_deleted_from_the_command_line() {
    let pair = spawn_pair_configured(Vec::new(), |config| {
        config.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
        config.webhook_retry_base_seconds = 0.05;
        config.webhook_timeout_seconds = 5.0;
    })
    .await;
    let endpoint = pair.orchestrator.url();
    let (_tenant, key) = tenant_with_account(&endpoint, "shopper", true, 5).await;
    let tenant_wide = As {
        admin: false,
        key: Some(&key),
        account: None,
    };
    let shopper = As {
        account: Some("shopper"),
        ..tenant_wide
    };
    let receiver = WebhookReceiver::start().await;
    let hooks = receiver.url("/hooks");
    let shop_hooks = receiver.url("/shopper");

    // People get the secret on stdout (to capture, as with create-key) and the rest on stderr.
    let run = atelier(
        &endpoint,
        tenant_wide,
        &[
            "webhooks",
            "create",
            &hooks,
            "--events",
            "terminal,progress",
        ],
    )
    .await
    .ok();
    let secret = run.line();
    assert!(secret.starts_with("whsec_"), "{run:#?}");
    assert!(
        run.stderr
            .contains("(tenant-wide; events terminal,progress)")
            && run.stderr.contains("shown only once"),
        "{run:#?}"
    );
    let id = run
        .stderr
        .split_whitespace()
        .nth(2)
        .expect("the endpoint id")
        .to_string();
    assert!(id.starts_with("we_"), "{run:#?}");

    // With --account, the endpoint is that account's.
    let created = atelier(
        &endpoint,
        shopper,
        &["--json", "webhooks", "create", &shop_hooks],
    )
    .await
    .ok()
    .json();
    assert_eq!(created["account"], "shopper", "{created:#}");
    assert_eq!(created["events"], serde_json::json!(["terminal"]));
    let shop_secret = created["secret"].as_str().expect("secret").to_string();
    let shop_id = created["id"].as_str().expect("id").to_string();

    let run = atelier(&endpoint, tenant_wide, &["webhooks", "list"])
        .await
        .ok();
    assert!(
        run.stdout
            .contains(&format!("{id}  tenant-wide  terminal,progress  {hooks}\n")),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "{shop_id}  account shopper  terminal  {shop_hooks}\n"
        )),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("  callback_url of jobs  terminal  secret whsec_"),
        "{run:#?}"
    );
    let listed = atelier(&endpoint, tenant_wide, &["--json", "webhooks", "list"])
        .await
        .ok()
        .json();
    assert_eq!(
        listed["endpoints"].as_array().map(Vec::len),
        Some(3),
        "{listed:#}"
    );

    // A job of the shopper reaches both endpoints, signed with each one's secret.
    let photo = product_jpeg(pair.root.path());
    let photo = photo.to_str().expect("utf-8 path");
    let job = atelier(
        &endpoint,
        shopper,
        &["--json", "submit", "transform", photo, "--width", "64"],
    )
    .await
    .ok()
    .json();
    let job_id = job["id"].as_str().expect("job id").to_string();
    atelier(&endpoint, shopper, &["watch", &job_id]).await.ok();
    // Deliveries are sent side by side, not in order: a progress event may land after the
    // terminal one, so the wait is for both terminal deliveries and the progress.
    let log = receiver
        .wait_until(
            "both terminal deliveries and the progress",
            Duration::from_secs(30),
            |log| {
                let progress = log
                    .iter()
                    .any(|d| d.path == "/hooks" && d.json["type"] == "task.progress");
                progress
                    && ["/hooks", "/shopper"].iter().all(|path| {
                        log.iter().any(|d| {
                            d.path == *path
                                && d.json["type"] == "job.succeeded"
                                && d.json["job_id"] == job_id.as_str()
                        })
                    })
            },
        )
        .await;
    for d in &log {
        let secret = if d.path == "/hooks" {
            &secret
        } else {
            &shop_secret
        };
        assert!(d.signed_with(secret), "{d:#?}");
    }
    assert!(
        log.iter()
            .any(|d| d.path == "/hooks" && d.json["type"] == "task.progress"),
        "progress events reach the endpoint that asked for them: {log:#?}"
    );
    assert!(
        log.iter()
            .all(|d| d.path == "/hooks" || d.json["type"] != "task.progress"),
        "and only that one: {log:#?}"
    );

    // Every attempt is listed, by job and by endpoint.
    let run = atelier_until(
        &endpoint,
        tenant_wide,
        &[
            "webhooks",
            "deliveries",
            "--job",
            &job_id,
            "--page-size",
            "100",
        ],
        |run| {
            run.stdout.lines().any(|l| {
                l.contains(&format!("endpoint {shop_id}")) && l.ends_with("delivered (HTTP 200)")
            })
        },
    )
    .await;
    assert!(
        run.stdout
            .lines()
            .all(|l| l.contains(&format!("job {job_id}"))),
        "{run:#?}"
    );
    let page = atelier(
        &endpoint,
        tenant_wide,
        &[
            "--json",
            "webhooks",
            "deliveries",
            "--endpoint-id",
            &shop_id,
        ],
    )
    .await
    .ok()
    .json();
    let attempts = page["deliveries"].as_array().expect("deliveries");
    assert!(!attempts.is_empty(), "{page:#}");
    assert!(
        attempts.iter().all(|a| a["endpoint_id"] == shop_id.as_str()
            && a["delivered"] == true
            && a["status"] == 200),
        "{page:#}"
    );

    // Deleted by URL and by id; then only the callback endpoint is left.
    let run = atelier(&endpoint, tenant_wide, &["webhooks", "delete", &shop_hooks])
        .await
        .ok();
    assert_eq!(
        run.line(),
        format!("webhook endpoint {shop_id} deleted ({shop_hooks})")
    );
    atelier(&endpoint, tenant_wide, &["webhooks", "delete", &id])
        .await
        .ok();
    let listed = atelier(&endpoint, tenant_wide, &["--json", "webhooks", "list"])
        .await
        .ok()
        .json();
    let left = listed["endpoints"].as_array().expect("endpoints");
    assert_eq!(left.len(), 1, "{listed:#}");
    assert_eq!(left[0]["url"], "", "{listed:#}");

    // Mistakes: an id that is gone, a URL nobody registered, a URL that is not http(s).
    let run = atelier(&endpoint, tenant_wide, &["webhooks", "delete", &id]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("error 1004 NOT_FOUND"), "{run:#?}");
    let run = atelier(&endpoint, tenant_wide, &["webhooks", "delete", &hooks]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("no webhook endpoint of yours has the URL"),
        "{run:#?}"
    );
    let run = atelier(
        &endpoint,
        tenant_wide,
        &["webhooks", "create", "ftp://example.com/hook"],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("error 1003 INVALID_ARGUMENT"),
        "{run:#?}"
    );

    pair.orchestrator.stop().await.expect("orchestrator stops");
    pair.processor.stop().await.expect("processor stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_what_the_processors_have_configured() {
    use atelier_processor::providers::{NodeField, WorkflowConfig};
    use atelier_processor::{ModelConfig, ModelKind, Protocol, ProviderConfig};
    use atelier_testkit::foreign::{self, ForeignServer, Speaks};

    let ark = ForeignServer::start(Speaks::Ark).await;
    let hub = ForeignServer::start(Speaks::RunningHub).await;
    let model = |id: &str, kinds: &[ModelKind]| ModelConfig {
        id: id.into(),
        kinds: kinds.to_vec(),
    };
    let seedream = ProviderConfig::with_protocol(
        "ark",
        Protocol::Ark,
        &ark.base_url(),
        Some(foreign::KEY),
        vec![model("seedream", &[ModelKind::Generate, ModelKind::Edit])],
    );
    let mut runninghub = ProviderConfig::with_protocol(
        "runninghub",
        Protocol::RunningHub,
        &hub.base_url(),
        Some(foreign::KEY),
        vec![model("model_pose12", &[ModelKind::PoseSet])],
    );
    runninghub.workflows = vec![WorkflowConfig {
        model: "model_pose12".into(),
        workflow_id: "1".into(),
        image_node: Some(NodeField {
            node_id: "12".into(),
            field_name: "image".into(),
        }),
        prompt_node: None,
        seed_node: None,
        images_per_run: 12,
    }];
    let pair = spawn_pair_with(vec![seedream, runninghub]).await;
    let endpoint = pair.orchestrator.url();
    let (_tenant, key) = tenant_with_account(&endpoint, "artist", true, 5).await;
    let artist = As {
        admin: false,
        key: Some(&key),
        account: Some("artist"),
    };
    let run = atelier(&endpoint, artist, &["models"]).await.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.contains(&"seedream  ark  edit,generate")
            || lines.contains(&"seedream  ark  generate,edit"),
        "{run:#?}"
    );
    assert!(
        lines.contains(&"model_pose12  runninghub  pose_set"),
        "{run:#?}"
    );
    let run = atelier(&endpoint, artist, &["--json", "models"]).await.ok();
    let json = run.json();
    let models = json["models"].as_array().expect("models");
    assert_eq!(models.len(), 2, "{json}");
    assert!(models.iter().any(|m| m["id"] == "model_pose12"
        && m["provider"] == "runninghub"
        && m["kinds"][0] == "pose_set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_print_as_links_download_checked_and_deleted_jobs_are_gone() {
    // The orchestrator mints links to the gateway's `/v1/files/`.
    let pair = Stack::builder(Backend::Sqlite)
        .gateway(|_| {})
        .start()
        .await;
    let files = format!("{}/v1/files/", pair.gateway().url());
    let endpoint = pair.orchestrator.url();
    let (tenant, key) = tenant_with_account(&endpoint, "shopper", true, 3).await;
    let run = atelier(
        &endpoint,
        ADMIN_ONLY,
        &["admin", "retention", &tenant, "--output-days", "2"],
    )
    .await
    .ok();
    assert_eq!(
        run.line(),
        format!("retention of {tenant}: outputs 2 days, uploads default, events default")
    );
    let shopper = As {
        admin: false,
        key: Some(&key),
        account: Some("shopper"),
    };
    let photo = product_jpeg(pair.root.path());
    let photo = photo.to_str().expect("utf-8 path");
    let run = atelier(
        &endpoint,
        shopper,
        &[
            "submit",
            "basic-clean",
            photo,
            "--template",
            "all",
            "--watch",
        ],
    )
    .await
    .ok();
    let job_id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("job "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a `job <id>` line")
        .to_string();

    // `get` prints links a browser opens.
    let run = atelier(&endpoint, shopper, &["get", &job_id]).await.ok();
    assert!(run.stdout.contains(&files), "{run:#?}");
    let job = atelier(&endpoint, shopper, &["--json", "get", &job_id])
        .await
        .ok()
        .json();
    let task_id = job["tasks"][0]["id"].as_str().expect("task id").to_string();
    let outputs = job["tasks"][0]["outputs"]
        .as_array()
        .expect("outputs")
        .clone();
    assert!(outputs.len() >= 2, "{job:#}");

    // `download` saves every output, checked against its SHA-256.
    let dir = pair.root.path().join("downloads");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let run = atelier(&endpoint, shopper, &["download", &job_id, dir_arg])
        .await
        .ok();
    assert_eq!(run.stdout.lines().count(), outputs.len(), "{run:#?}");
    for output in &outputs {
        let name = output["name"].as_str().expect("name");
        let saved = std::fs::read(dir.join(&task_id).join(name)).expect("saved file");
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&saved)),
            output["sha256"].as_str().expect("sha256"),
            "{name}"
        );
    }

    // `delete` removes it: the job is unknown afterwards and there is nothing to download.
    let run = atelier(&endpoint, shopper, &["delete", &job_id]).await.ok();
    assert!(
        run.stdout.contains(&format!("deleted {job_id}")),
        "{run:#?}"
    );
    let run = atelier(&endpoint, shopper, &["get", &job_id]).await;
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("1004"), "{run:#?}");
    let run = atelier(
        &endpoint,
        shopper,
        &[
            "download",
            &job_id,
            pair.root.path().join("again").to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_ne!(run.code, 0, "{run:#?}");
}
