//! `spawn_app()` and what tests share: images, the source server, stream helpers.

pub use atelier_testkit::{images, provider, source};

use atelier_codes::{decode, Decoded};
use atelier_processor::{Config, ModelConfig, ModelKind, ProviderConfig, RunningProcessor};
use atelier_proto::v1::{
    self, process_event::Event, processor_service_client::ProcessorServiceClient,
};
use atelier_storage::{S3Options, Storage};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

pub use provider::ProviderServer;
pub use source::{Seen, SourceServer};

/// The model the fake provider is configured with.
pub const MODEL: &str = "test-image-1";
/// The fake provider's configured name.
pub const PROVIDER: &str = "fake";

/// The service token every test app uses.
pub const TOKEN: &str = "test-service-token";

/// Adds `x-api-key` to every call.
#[derive(Clone)]
pub struct ApiKey(pub Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("x-api-key", key.clone());
        }
        Ok(request)
    }
}

/// A typed client with the token interceptor.
pub type Client = ProcessorServiceClient<InterceptedService<Channel, ApiKey>>;

/// A running processor, its storage, and a source server.
pub struct TestApp {
    pub processor: RunningProcessor,
    pub client: Client,
    pub storage: Storage,
    pub sources: SourceServer,
    pub provider: Option<ProviderServer>,
    _root: Option<tempfile::TempDir>,
}

/// The fake provider serving [`MODEL`] for edit, generate and pose_set, with its API key.
pub fn provider_config(provider: &ProviderServer) -> ProviderConfig {
    ProviderConfig::new(
        PROVIDER,
        &provider.base_url(),
        Some(provider::API_KEY),
        vec![ModelConfig {
            id: MODEL.into(),
            kinds: vec![ModelKind::Edit, ModelKind::Generate, ModelKind::PoseSet],
        }],
    )
}

/// Like [`spawn_app`], with a fake model provider configured.
pub async fn spawn_app_with_provider() -> TestApp {
    spawn_app_with_provider_and(|_, _| {}).await
}

/// Like [`spawn_app_with_provider`], with the configuration adjusted by `tweak` first.
pub async fn spawn_app_with_provider_and(
    tweak: impl FnOnce(&mut Config, &ProviderServer),
) -> TestApp {
    let provider = ProviderServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let location = root.path().join("objects").display().to_string();
    let mut config = test_config(&location);
    config.providers = vec![provider_config(&provider)];
    tweak(&mut config, &provider);
    let mut app = start(config, Some(root)).await;
    app.provider = Some(provider);
    app
}

/// The processor with tempdir LocalFs storage, allow-list 127.0.0.1, and a fresh source server.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `tweak` first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let root = tempfile::tempdir().expect("temp dir");
    let location = root.path().join("objects").display().to_string();
    let mut config = test_config(&location);
    tweak(&mut config);
    start(config, Some(root)).await
}

/// The processor on an S3-compatible store.
pub async fn spawn_app_on_s3(location: String, options: S3Options) -> TestApp {
    let mut config = test_config(&location);
    config.s3 = options;
    start(config, None).await
}

fn test_config(location: &str) -> Config {
    let mut config = Config::new(TOKEN, location);
    config.allow_private_sources = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.processor_id = Some("test-processor".into());
    config.max_concurrency = 4;
    config
}

async fn start(config: Config, root: Option<tempfile::TempDir>) -> TestApp {
    let storage = Storage::open(&config.storage, &config.s3_options())
        .await
        .expect("open storage");
    let processor = atelier_processor::spawn(config)
        .await
        .expect("processor starts");
    let client = client_with_key(&processor, Some(TOKEN)).await;
    let sources = SourceServer::start().await;
    TestApp {
        processor,
        client,
        storage,
        sources,
        provider: None,
        _root: root,
    }
}

/// A channel to the processor.
pub async fn channel(processor: &RunningProcessor) -> Channel {
    Channel::from_shared(processor.url())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// A client sending `key` (or nothing) as `x-api-key`.
pub async fn client_with_key(processor: &RunningProcessor, key: Option<&str>) -> Client {
    let key = key.map(|k| k.parse().expect("ascii key"));
    ProcessorServiceClient::with_interceptor(channel(processor).await, ApiKey(key))
}

/// A request for `params` on `source`, storing under `prefix`.
pub fn request(
    params: v1::job_params::Params,
    source: v1::source_ref::Source,
    prefix: &str,
) -> v1::ProcessRequest {
    v1::ProcessRequest {
        job_id: "job-1".into(),
        task_id: "task-1".into(),
        tenant_id: "tenant-1".into(),
        attempt: 1,
        params: Some(v1::JobParams {
            params: Some(params),
        }),
        source: Some(v1::SourceRef {
            source: Some(source),
        }),
        output_prefix: prefix.into(),
        account: "shop".into(),
    }
}

/// `req` as task `task` of `tenant`, storing under the orchestrator's prefix layout.
pub fn as_task(mut req: v1::ProcessRequest, tenant: &str, task: &str) -> v1::ProcessRequest {
    req.tenant_id = tenant.into();
    req.task_id = task.into();
    req.output_prefix = format!("t/{tenant}/jobs/job-1/{task}/1");
    req
}

/// Edit parameters with `prompt`, everything else default.
pub fn edit(prompt: &str) -> v1::job_params::Params {
    v1::job_params::Params::Edit(v1::EditParams {
        prompt: prompt.into(),
        ..Default::default()
    })
}

/// The outputs among `events`.
pub fn outputs(events: &[Event]) -> Vec<v1::Output> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Output(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

/// The final `Completed` event.
pub fn completed(events: &[Event]) -> v1::Completed {
    match events.last() {
        Some(Event::Completed(c)) => c.clone(),
        other => panic!("the stream should end with Completed, not {other:?}"),
    }
}

/// Default transform parameters.
pub fn transform(params: v1::TransformParams) -> v1::job_params::Params {
    v1::job_params::Params::Transform(params)
}

/// A URL source.
pub fn url(url: String) -> v1::source_ref::Source {
    v1::source_ref::Source::Url(url)
}

/// Every event until the stream ends, and the final error if it ended with one.
pub async fn collect(mut stream: Streaming<v1::ProcessEvent>) -> (Vec<Event>, Option<Status>) {
    let mut events = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(event)) => events.extend(event.event),
            Ok(None) => return (events, None),
            Err(status) => return (events, Some(status)),
        }
    }
}

impl TestApp {
    /// The fake provider (apps from [`spawn_app_with_provider`] only).
    pub fn provider(&self) -> &ProviderServer {
        self.provider.as_ref().expect("an app with a provider")
    }

    /// `GET /metrics` on the metrics port.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.processor.metrics_addr());
        let response = reqwest::get(&url).await.expect("metrics answer");
        assert!(response.status().is_success(), "{}", response.status());
        response.text().await.expect("metrics body")
    }

    /// The value of one series, e.g. `atelier_processor_engine_runs_total{kind="transform"}`;
    /// 0 when the series does not exist yet.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// An edit of `path` on the source server with `prompt`.
    pub fn edit_url(&self, path: &str, prompt: &str) -> v1::ProcessRequest {
        request(
            edit(prompt),
            url(self.sources.url(path)),
            "jobs/job-1/task-1",
        )
    }

    /// Runs `req` to the end: the events, or the decoded failure (from the call or the stream).
    pub async fn run(&self, req: v1::ProcessRequest) -> (Vec<Event>, Option<Decoded>) {
        let mut client = self.client.clone();
        match client.process(req).await {
            Err(status) => (Vec::new(), Some(decode(&status))),
            Ok(response) => {
                let (events, status) = collect(response.into_inner()).await;
                (events, status.as_ref().map(decode))
            }
        }
    }

    /// Runs `req` expecting success; returns the outputs.
    pub async fn run_ok(&self, req: v1::ProcessRequest) -> (Vec<Event>, Vec<v1::Output>) {
        let (events, failure) = self.run(req).await;
        assert!(failure.is_none(), "task failed: {failure:?}");
        assert!(matches!(
            events.last(),
            Some(Event::Completed(v1::Completed {
                from_cache: false,
                ..
            }))
        ));
        let outputs = events
            .iter()
            .filter_map(|e| match e {
                Event::Output(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        (events, outputs)
    }

    /// Runs `req` expecting failure; returns the decoded failure.
    pub async fn run_err(&self, req: v1::ProcessRequest) -> Decoded {
        let (events, failure) = self.run(req).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Output(_) | Event::Completed(_))),
            "{events:?}"
        );
        failure.expect("the task should fail")
    }

    /// A transform of `path` on the source server, with default parameters.
    pub fn transform_url(&self, path: &str) -> v1::ProcessRequest {
        request(
            transform(Default::default()),
            url(self.sources.url(path)),
            "jobs/job-1/task-1",
        )
    }

    /// Whether anything is stored under `prefix` (a LocalFs app only).
    pub fn local_files_under(&self, prefix: &str) -> Vec<std::path::PathBuf> {
        let root = self
            ._root
            .as_ref()
            .expect("local storage")
            .path()
            .join("objects")
            .join(prefix);
        let mut found = Vec::new();
        let mut pending = vec![root];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }
}

/// The value of `series` in a Prometheus text exposition; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a number")
        })
        .unwrap_or(0.0)
}
