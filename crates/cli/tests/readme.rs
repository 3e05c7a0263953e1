//! The README works when followed word for word: every ```bash block marked
//! `<!-- readme-test: NAME -->` is read from README.md at test time and run, in order, in one bash
//! session, against a real stack this test starts on free ports of 127.0.0.1: a processor with a fake
//! model provider, an orchestrator on SQLite, the gateway and a webhook receiver. The commands run as
//! written, with the built `atelier` first on PATH and `curl`/`jq` from the system.
//!
//! What the test supplies: the variables the README leaves to the reader (`$ADMIN_TOKEN`,
//! `$SERVICE_TOKEN`, `$S3_KEY_ID`, `$S3_SECRET`, `$R2_ACCOUNT`, `$HOOK_URL`), the CLI's address through
//! its documented `ATELIER_ENDPOINT`, its own ports in place of the README's (50051, 8080, 9100, 9101),
//! and `photo.jpg`/`shoe.jpg` in the working folder. Server commands (`atelier-orchestrator`,
//! `atelier-processor`, `atelier-gateway`) are not started: bash functions record their arguments, which
//! must then parse with the services' own command lines, and S3 storage they name must open (so a
//! missing credential fails here as it would at start). Every other line must exit 0 — `curl` runs with
//! `--fail-with-body`, so an HTTP error fails too — and each block's key outputs are checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_testkit::provider::{self, ProviderServer};
use atelier_testkit::WebhookReceiver;
use clap::Parser as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const ADMIN: &str = "readme-test-admin-token";
const SERVICE: &str = "readme-test-service-token";
/// The longest one block may take (basic_clean of the sample photo, twelve pose-set shots).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// Blocks the README must keep marked: onboarding, the gateway's curl lines, the webhook example.
const REQUIRED: [&str; 6] = [
    "servers",
    "onboarding",
    "gateway",
    "metrics",
    "webhooks",
    "webhook-deliveries",
];

/// One marked block of the README.
#[derive(Debug)]
struct Block {
    name: String,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
}

/// Every ```bash block preceded by `<!-- readme-test: NAME -->` (blank lines allowed in between).
fn marked_blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i]
            .trim()
            .strip_prefix("<!-- readme-test:")
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(|n| n.trim().to_string())
        else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        assert!(
            j < lines.len() && lines[j].trim() == "```bash",
            "README.md:{}: `readme-test: {name}` must be followed by a ```bash block",
            i + 1
        );
        let indent = lines[j].len() - lines[j].trim_start().len();
        let mut text = String::new();
        let mut k = j + 1;
        while k < lines.len() && lines[k].trim() != "```" {
            let line = lines[k];
            text.push_str(line.get(indent..).unwrap_or(line.trim_start()));
            text.push('\n');
            k += 1;
        }
        assert!(
            k < lines.len(),
            "README.md:{}: block `{name}` is never closed",
            j + 1
        );
        blocks.push(Block {
            name,
            line: j + 1,
            text,
        });
        i = k + 1;
    }
    blocks
}

#[test]
fn marked_blocks_are_found_with_their_indentation_removed() {
    let text = "x\n<!-- readme-test: a -->\n```bash\necho one\n```\n\n  <!-- readme-test: b -->\n\n  ```bash\n  echo two\n    echo three\n  ```\n```bash\necho unmarked\n```\n";
    let blocks = marked_blocks(text);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!((blocks[0].name.as_str(), blocks[0].line), ("a", 3));
    assert_eq!(blocks[0].text, "echo one\n");
    assert_eq!(blocks[1].name, "b");
    assert_eq!(blocks[1].text, "echo two\n  echo three\n");
}

/// The services the README's commands talk to, and what the test watches.
struct Stack {
    orchestrator: atelier_orchestrator::RunningOrchestrator,
    processor: atelier_processor::RunningProcessor,
    gateway: atelier_gateway::RunningGateway,
    receiver: WebhookReceiver,
    _provider: ProviderServer,
}

async fn start_stack(root: &Path) -> Stack {
    let provider = ProviderServer::start().await;
    let objects = root.join("objects").display().to_string();
    let mut pconfig = atelier_processor::Config::new(SERVICE, objects.clone());
    pconfig.allow_private_sources = vec!["127.0.0.1/32".parse().expect("cidr")];
    pconfig.providers = vec![atelier_processor::ProviderConfig::new(
        "fake",
        &provider.base_url(),
        Some(provider::API_KEY),
        vec![atelier_processor::ModelConfig {
            id: "readme-image-1".into(),
            kinds: vec![
                atelier_processor::ModelKind::Edit,
                atelier_processor::ModelKind::Generate,
                atelier_processor::ModelKind::PoseSet,
            ],
        }],
    )];
    let processor = atelier_processor::spawn(pconfig)
        .await
        .expect("processor starts");
    let database_url = format!("sqlite://{}/atelier.db", root.display());
    let mut config =
        atelier_orchestrator::Config::new(database_url, objects, vec![processor.url()]);
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.poll_seconds = 0.05;
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.webhook_retry_base_seconds = 0.05;
    let orchestrator = atelier_orchestrator::spawn(config)
        .await
        .expect("orchestrator starts");
    let gateway = atelier_gateway::spawn(atelier_gateway::Config::new(orchestrator.url()))
        .await
        .expect("gateway starts");
    Stack {
        orchestrator,
        processor,
        gateway,
        receiver: WebhookReceiver::start().await,
        _provider: provider,
    }
}

impl Stack {
    /// The README's ports, replaced by this stack's.
    fn ports(&self) -> Vec<(String, String)> {
        let metrics = self
            .orchestrator
            .metrics_addr()
            .expect("orchestrator metrics are on");
        vec![
            (
                "127.0.0.1:50051".into(),
                self.orchestrator.addr().to_string(),
            ),
            ("127.0.0.1:50052".into(), self.processor.addr().to_string()),
            ("127.0.0.1:8080".into(), self.gateway.addr().to_string()),
            ("127.0.0.1:9100".into(), metrics.to_string()),
            (
                "127.0.0.1:9101".into(),
                self.processor.metrics_addr().to_string(),
            ),
        ]
    }
}

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// A bash process reading the README's blocks from its stdin.
struct Shell {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<(Stream, String)>,
    /// Everything printed so far, for failure messages.
    transcript: String,
    blocks_run: usize,
}

/// What one block printed.
#[derive(Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
}

impl Shell {
    async fn start(work: &Path, servers: &Path, env: &[(&str, String)]) -> Self {
        let atelier = PathBuf::from(env!("CARGO_BIN_EXE_atelier"));
        let bin_dir = atelier.parent().expect("the atelier binary's folder");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new("bash");
        command
            .args(["--noprofile", "--norc"])
            .current_dir(work)
            .env_clear()
            .env("PATH", path)
            .env("HOME", work)
            .env("LC_ALL", "C.UTF-8")
            .env("READMETEST_SERVERS", servers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("bash starts");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = mpsc::unbounded_channel();
        for (stream, reader) in [
            (
                Stream::Out,
                Box::new(child.stdout.take().expect("stdout"))
                    as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            ),
            (Stream::Err, Box::new(child.stderr.take().expect("stderr"))),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(reader).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            });
        }
        let mut shell = Self {
            child,
            stdin,
            lines,
            transcript: String::new(),
            blocks_run: 0,
        };
        // Server commands are recorded, not started; curl fails on HTTP errors; a failing line
        // is named before the shell exits.
        shell
            .send(
                r#"set -euo pipefail
__servers=0
__server() { __servers=$((__servers + 1)); printf '%s\0' "$@" > "$READMETEST_SERVERS/$__servers"; }
atelier-orchestrator() { __server atelier-orchestrator "$@"; }
atelier-processor() { __server atelier-processor "$@"; }
atelier-gateway() { __server atelier-gateway "$@"; }
curl() { command curl --fail-with-body --show-error "$@"; }
trap 'echo "::readme-failed: exit $? at: $BASH_COMMAND" >&2' ERR
"#,
            )
            .await;
        shell
    }

    async fn send(&mut self, text: &str) {
        self.stdin
            .write_all(text.as_bytes())
            .await
            .expect("write to bash");
        self.stdin.flush().await.expect("flush to bash");
    }

    /// Runs `text` (with stdin from /dev/null, so no command eats the script) and returns what it
    /// printed; fails the test, showing the block and everything printed, if a line fails. The end
    /// marker follows a newline of its own: `curl` prints JSON bodies without one.
    async fn run(&mut self, name: &str, line: usize, text: &str) -> Output {
        self.blocks_run += 1;
        let marker = format!("::readme-done {}", self.blocks_run);
        self.send(&format!(
            "{{\n{text}\n}} </dev/null\nprintf '\\n%s\\n' '{marker}'\nprintf '\\n%s\\n' '{marker}' >&2\n"
        ))
        .await;
        let mut output = Output::default();
        let (mut out_done, mut err_done) = (false, false);
        let deadline = tokio::time::Instant::now() + BLOCK_TIMEOUT;
        while !(out_done && err_done) {
            let next = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            let (stream, text_line) = match next {
                Ok(Some(item)) => item,
                Ok(None) => {
                    let status = self.child.wait().await.ok();
                    panic!(
                        "README.md:{line}: block `{name}` failed (bash ended: {status:?})\n--- block ---\n{text}--- output ---\n{}{}",
                        self.transcript,
                        indent(&output)
                    );
                }
                Err(_) => panic!(
                    "README.md:{line}: block `{name}` did not finish within {BLOCK_TIMEOUT:?}\n--- block ---\n{text}--- output ---\n{}",
                    indent(&output)
                ),
            };
            if text_line == marker {
                match stream {
                    Stream::Out => out_done = true,
                    Stream::Err => err_done = true,
                }
                continue;
            }
            let target = match stream {
                Stream::Out => &mut output.stdout,
                Stream::Err => &mut output.stderr,
            };
            target.push_str(&text_line);
            target.push('\n');
        }
        self.transcript.push_str(&format!(
            "=== {name} (README.md:{line})\n{}",
            indent(&output)
        ));
        output
    }

    /// The values of shell variables the blocks set.
    async fn vars(&mut self, names: &[&str]) -> HashMap<String, String> {
        let script: String = names
            .iter()
            .map(|n| format!("printf '%s=%s\\n' {n} \"${{{n}-}}\"\n"))
            .collect();
        let out = self.run("(the test reads variables)", 0, &script).await;
        out.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn indent(output: &Output) -> String {
    let mut text = String::new();
    for line in output.stdout.lines() {
        text.push_str(&format!("  out| {line}\n"));
    }
    for line in output.stderr.lines() {
        text.push_str(&format!("  err| {line}\n"));
    }
    text
}

/// Asserts that the block printed every one of `needles` (stdout and stderr together).
fn assert_printed(name: &str, output: &Output, needles: &[&str]) {
    let all = format!("{}{}", output.stdout, output.stderr);
    for needle in needles {
        assert!(
            all.contains(needle),
            "block `{name}` should print {needle:?}:\n{}",
            indent(output)
        );
    }
}

/// Parses every recorded server command with its service's own command line; S3 storage it names
/// must open (credentials present, endpoint and prefix valid).
async fn check_servers(dir: &Path) -> Vec<String> {
    let mut recorded: Vec<(u32, Vec<String>)> = std::fs::read_dir(dir)
        .expect("server records")
        .map(|entry| {
            let entry = entry.expect("entry");
            let n: u32 = entry
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("numbered record");
            let bytes = std::fs::read(entry.path()).expect("record");
            let args = String::from_utf8(bytes)
                .expect("utf-8 arguments")
                .split('\0')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            (n, args)
        })
        .collect();
    recorded.sort();
    let mut names = Vec::new();
    for (_, argv) in recorded {
        let program = argv[0].clone();
        let (storage, s3) = match program.as_str() {
            "atelier-orchestrator" => {
                let cli = atelier_orchestrator::Cli::try_parse_from(&argv)
                    .unwrap_or_else(|e| panic!("README: {argv:?} does not parse:\n{e}"));
                cli.config
                    .price_table()
                    .unwrap_or_else(|e| panic!("README: {argv:?}: {e}"));
                (cli.config.storage.clone(), cli.config.s3_options())
            }
            "atelier-processor" => {
                let config = atelier_processor::Config::try_parse_from(&argv)
                    .unwrap_or_else(|e| panic!("README: {argv:?} does not parse:\n{e}"));
                (config.storage.clone(), config.s3_options())
            }
            "atelier-gateway" => {
                atelier_gateway::Config::try_parse_from(&argv)
                    .unwrap_or_else(|e| panic!("README: {argv:?} does not parse:\n{e}"));
                names.push(program);
                continue;
            }
            other => panic!("unexpected server {other}"),
        };
        if storage.starts_with("s3://") {
            if let Err(e) = atelier_storage::Storage::open(&storage, &s3).await {
                panic!("README: {argv:?} would stop at start: {e}");
            }
        }
        names.push(program);
    }
    names
}

/// The job's webhook attempts as the API lists them, once `done` holds (every 100 ms, 30 s at most).
async fn attempts_until(
    stack: &Stack,
    key: &str,
    job_id: &str,
    done: impl Fn(&[pb::WebhookDelivery]) -> bool,
) -> Vec<pb::WebhookDelivery> {
    let mut accounts =
        pb::account_service_client::AccountServiceClient::connect(stack.orchestrator.url())
            .await
            .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut request = tonic::Request::new(pb::ListWebhookDeliveriesRequest {
            job_id: job_id.into(),
            page_size: 100,
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii key"),
        );
        let attempts = accounts
            .list_webhook_deliveries(request)
            .await
            .expect("deliveries")
            .into_inner()
            .deliveries;
        if done(&attempts) {
            return attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deliveries never got there: {attempts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_readme_works_when_followed_word_for_word() {
    // Nothing of the caller's environment may stand in for what the README says: no AWS_* credential
    // behind an S3 example, no ATELIER_* setting behind a command line. Removed before any thread runs.
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("ATELIER_") {
            std::env::remove_var(name);
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(follow_the_readme());
}

async fn follow_the_readme() {
    for tool in ["bash", "curl", "jq"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is needed to run the README's commands (see README: Development)"
        );
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let blocks = marked_blocks(&readme);
    for required in REQUIRED {
        assert!(
            blocks.iter().any(|b| b.name == required),
            "README.md has no block marked `readme-test: {required}`"
        );
    }

    let root = tempfile::tempdir().expect("temp dir");
    let work = root.path().join("work");
    let servers = root.path().join("servers");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::create_dir_all(&servers).expect("servers dir");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/sample-product.jpg");
    for name in ["photo.jpg", "shoe.jpg"] {
        std::fs::copy(&sample, work.join(name)).expect("copy the sample photo");
    }
    let stack = start_stack(root.path()).await;
    let hook_url = stack.receiver.url("/hooks/atelier");
    let mut shell = Shell::start(
        &work,
        &servers,
        &[
            ("ADMIN_TOKEN", ADMIN.to_string()),
            ("SERVICE_TOKEN", SERVICE.to_string()),
            ("S3_KEY_ID", "readme-key-id".to_string()),
            ("S3_SECRET", "readme-secret".to_string()),
            ("R2_ACCOUNT", "readme-account".to_string()),
            ("HOOK_URL", hook_url.clone()),
            ("ATELIER_ENDPOINT", stack.orchestrator.url()),
        ],
    )
    .await;

    let ports = stack.ports();
    for block in &blocks {
        let mut text = block.text.clone();
        for (readme_port, ours) in &ports {
            text = text.replace(readme_port.as_str(), ours);
        }
        let output = shell.run(&block.name, block.line, &text).await;
        match block.name.as_str() {
            "onboarding" => assert_printed(
                "onboarding",
                &output,
                &[
                    "membership   active",
                    "balance      100",
                    "basic_clean",
                    "matting.png",
                    "white-bg.jpg",
                    "enhanced.jpg",
                    "generate",
                    "image-1.png",
                    "pose_set",
                ],
            ),
            "gateway" => assert_printed(
                "gateway",
                &output,
                &[
                    "event: job_state",
                    "\"state\":\"succeeded\"",
                    "\"kind\":\"basic_clean\"",
                    "\"balance\":",
                    "\"models\":",
                    "\"status\":\"ok\"",
                ],
            ),
            "metrics" => assert_printed("metrics", &output, &["atelier_jobs", "atelier_processor"]),
            "webhooks" => {
                assert_printed(
                    "webhooks",
                    &output,
                    &["tenant-wide", "callback_url of jobs", "SUCCEEDED"],
                );
                let vars = shell.vars(&["KEY", "JOB", "SECRET"]).await;
                let (key, job, secret) = (&vars["KEY"], &vars["JOB"], &vars["SECRET"]);
                assert!(secret.starts_with("whsec_"), "{vars:?}");
                // Deliveries are sent side by side, not in order: --events terminal,progress
                // brings the job's progress too, though it may land after its terminal event.
                let log = stack
                    .receiver
                    .wait_until(
                        "the README job's terminal and progress events",
                        Duration::from_secs(30),
                        |log| {
                            let of_job = |kind: &str| {
                                log.iter().any(|d| {
                                    d.json["job_id"] == job.as_str() && d.json["type"] == kind
                                })
                            };
                            of_job("job.succeeded") && of_job("task.progress")
                        },
                    )
                    .await;
                assert!(
                    log.iter().all(|d| d.signed_with(secret)),
                    "signed with the secret `webhooks create` printed: {log:#?}"
                );
                // The next block lists the attempts: wait until the API has recorded them.
                attempts_until(&stack, key, job, |a| a.iter().any(|a| a.delivered)).await;
            }
            "webhook-deliveries" => {
                let vars = shell.vars(&["KEY", "ENDPOINT"]).await;
                assert_printed(
                    "webhook-deliveries",
                    &output,
                    &[
                        "delivered (HTTP 200)",
                        "deleted",
                        &format!("\"url\":\"{hook_url}\""),
                        &format!("\"id\":\"{}\"", vars["ENDPOINT"]),
                        "\"deliveries\":[{",
                    ],
                );
                // Both endpoints are gone; the callback endpoint is all that is left.
                let mut accounts = pb::account_service_client::AccountServiceClient::connect(
                    stack.orchestrator.url(),
                )
                .await
                .expect("connect");
                let mut request = tonic::Request::new(pb::ListWebhookEndpointsRequest {});
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {}", vars["KEY"]).parse().expect("ascii"),
                );
                let left = accounts
                    .list_webhook_endpoints(request)
                    .await
                    .expect("list")
                    .into_inner()
                    .endpoints;
                assert!(left.iter().all(|e| e.url.is_empty()), "{left:#?}");
            }
            _ => {}
        }
    }

    let started = check_servers(&servers).await;
    for server in [
        "atelier-orchestrator",
        "atelier-processor",
        "atelier-gateway",
    ] {
        assert!(
            started.iter().any(|s| s == server),
            "the README shows how to start {server}: {started:?}"
        );
    }
    shell.send("exit 0\n").await;
    let status = shell.child.wait().await.expect("bash ends");
    assert!(status.success(), "bash: {status:?}\n{}", shell.transcript);
}
