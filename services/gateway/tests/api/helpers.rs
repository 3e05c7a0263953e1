//! `spawn_app()`: a real processor, a real orchestrator on a fresh database and a real gateway in front,
//! all on 127.0.0.1:0, with an HTTP client and helpers that read like the product.

#![allow(dead_code)]

use std::time::Duration;

use atelier_gateway::RunningGateway;
use atelier_orchestrator::RunningOrchestrator;
use atelier_processor::RunningProcessor;
use atelier_processor::{ModelConfig, ModelKind, ProviderConfig};
use atelier_proto::v1 as pb;
use atelier_proto::v1::account_service_client::AccountServiceClient;
use atelier_testkit::provider::ProviderServer;
use atelier_testkit::stack::Stack;
use atelier_testkit::SourceServer;
use serde_json::Value;
use tonic::transport::Channel;

pub use atelier_testkit::images;

pub use atelier_testkit::stack::{Backend, ADMIN, LINK_SECRET, SERVICE};

/// The running stack.
pub struct TestApp {
    pub gateway: RunningGateway,
    pub orchestrator: RunningOrchestrator,
    pub processor: RunningProcessor,
    pub accounts: AccountServiceClient<Channel>,
    pub sources: SourceServer,
    pub http: reqwest::Client,
    /// The storage folder the services share.
    pub objects: std::path::PathBuf,
    _root: tempfile::TempDir,
}

/// A tenant with its tenant-wide key.
pub struct Tenant {
    pub id: String,
    pub key: String,
}

/// Starts the stack with the default gateway configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the stack with the gateway configuration adjusted first.
pub async fn spawn_app_with(
    backend: Backend,
    gateway: impl FnOnce(&mut atelier_gateway::Config),
) -> TestApp {
    spawn_stack(backend, |_| {}, gateway).await
}

/// The model the fake provider serves.
pub const MODEL: &str = "test-image-1";

/// Starts the stack with a processor whose model provider is `provider` (edit, generate, pose_set).
pub async fn spawn_with_provider(backend: Backend, provider: &ProviderServer) -> TestApp {
    spawn_with_provider_and(backend, provider, |_| {}, |_| {}).await
}

/// [`spawn_with_provider`] with the orchestrator's and the gateway's configurations adjusted first.
pub async fn spawn_with_provider_and(
    backend: Backend,
    provider: &ProviderServer,
    orchestrator: impl FnOnce(&mut atelier_orchestrator::Config),
    gateway: impl FnOnce(&mut atelier_gateway::Config),
) -> TestApp {
    let base_url = provider.base_url();
    spawn_stack_with(
        backend,
        move |p| {
            p.providers = vec![ProviderConfig::new(
                "fake",
                &base_url,
                Some(atelier_testkit::provider::API_KEY),
                vec![ModelConfig {
                    id: MODEL.into(),
                    kinds: vec![ModelKind::Edit, ModelKind::Generate, ModelKind::PoseSet],
                }],
            )];
        },
        orchestrator,
        gateway,
    )
    .await
}

/// Starts the stack with the processor's and the gateway's configurations adjusted first.
pub async fn spawn_stack(
    backend: Backend,
    processor: impl FnOnce(&mut atelier_processor::Config),
    gateway: impl FnOnce(&mut atelier_gateway::Config),
) -> TestApp {
    spawn_stack_with(backend, processor, |_| {}, gateway).await
}

/// Starts the stack with the processor's, the orchestrator's and the gateway's configurations
/// adjusted first.
pub async fn spawn_stack_with(
    backend: Backend,
    processor: impl FnOnce(&mut atelier_processor::Config),
    orchestrator: impl FnOnce(&mut atelier_orchestrator::Config),
    gateway: impl FnOnce(&mut atelier_gateway::Config),
) -> TestApp {
    let stack = Stack::builder(backend)
        .processor(processor)
        .orchestrator(orchestrator)
        .gateway(gateway)
        .start()
        .await;
    let channel = Channel::from_shared(stack.orchestrator.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let gateway = stack.gateway.expect("the stack has a gateway");
    TestApp {
        gateway,
        orchestrator: stack.orchestrator,
        processor: stack.processor,
        accounts: AccountServiceClient::new(channel),
        sources: SourceServer::start().await,
        http: reqwest::Client::new(),
        objects: stack.objects,
        _root: stack.root,
    }
}

/// A request with the admin token.
pub fn admin_request<T>(message: T) -> tonic::Request<T> {
    admin(message)
}

fn admin<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("ascii"),
    );
    r
}

impl TestApp {
    /// `http://gateway{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    /// Creates a tenant and a tenant-wide key through the admin API.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let mut accounts = self.accounts.clone();
        let t = accounts
            .create_tenant(admin(pb::CreateTenantRequest { name: name.into() }))
            .await
            .expect("tenant")
            .into_inner();
        let key = accounts
            .create_api_key(admin(pb::CreateApiKeyRequest {
                tenant_id: t.id.clone(),
                account: String::new(),
            }))
            .await
            .expect("key")
            .into_inner();
        Tenant {
            id: t.id,
            key: key.secret,
        }
    }

    /// Creates an account with membership and `balance` units.
    pub async fn member(&self, tenant: &Tenant, account: &str, balance: i64) {
        let mut accounts = self.accounts.clone();
        accounts
            .upsert_account(admin(pb::UpsertAccountRequest {
                tenant_id: tenant.id.clone(),
                external_id: account.into(),
            }))
            .await
            .expect("account");
        accounts
            .set_membership(admin(pb::SetMembershipRequest {
                tenant_id: tenant.id.clone(),
                account: account.into(),
                active: true,
                expires_at: None,
            }))
            .await
            .expect("membership");
        if balance <= 0 {
            return;
        }
        accounts
            .grant_quota(admin(pb::GrantQuotaRequest {
                tenant_id: tenant.id.clone(),
                account: account.into(),
                amount: balance,
                reason: "test".into(),
                idempotency_key: String::new(),
            }))
            .await
            .expect("grant");
    }

    /// A tenant with one funded member account, `shopper`.
    pub async fn shop(&self) -> Tenant {
        let tenant = self.tenant("shop").await;
        self.member(&tenant, "shopper", 100).await;
        tenant
    }

    /// A request builder acting as `account` of `tenant`.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        tenant: &Tenant,
        account: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&tenant.key)
            .header("x-atelier-account", account)
    }

    /// `POST path` with a JSON body as the shopper; returns status and JSON.
    pub async fn post_json(&self, tenant: &Tenant, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .call(reqwest::Method::POST, path, tenant, "shopper")
            .json(&body)
            .send()
            .await
            .expect("request");
        status_and_json(response).await
    }

    /// `GET path` as the shopper; returns status and JSON.
    pub async fn get_json(&self, tenant: &Tenant, path: &str) -> (u16, Value) {
        let response = self
            .call(reqwest::Method::GET, path, tenant, "shopper")
            .send()
            .await
            .expect("request");
        status_and_json(response).await
    }

    /// Submits a transform job over `sources` through `POST /v1/jobs`; returns the job JSON.
    pub async fn submit_transform(&self, tenant: &Tenant, urls: &[String]) -> Value {
        let sources: Vec<Value> = urls.iter().map(|u| serde_json::json!({"url": u})).collect();
        let (status, job) = self
            .post_json(
                tenant,
                "/v1/jobs",
                serde_json::json!({
                    "kind": "transform",
                    "params": {"resize": {"width": 320, "fit": "inside"}, "format": "webp"},
                    "sources": sources,
                }),
            )
            .await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Every event of the job after `after`, read from `GET /v1/jobs/{id}/events` until the stream ends.
    pub async fn events(&self, tenant: &Tenant, job_id: &str, after: Option<u64>) -> Vec<Frame> {
        let mut request = self.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{job_id}/events"),
            tenant,
            "shopper",
        );
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        let response = request.send().await.expect("events");
        assert_eq!(response.status(), 200);
        read_frames(response, |_| false)
            .await
            .into_iter()
            .filter(|f| f.comment.is_none())
            .collect()
    }

    /// Waits (through the event stream) until the job is terminal and returns it.
    pub async fn finish(&self, tenant: &Tenant, job_id: &str) -> Value {
        self.events(tenant, job_id, None).await;
        let (status, job) = self.get_json(tenant, &format!("/v1/jobs/{job_id}")).await;
        assert_eq!(status, 200, "{job}");
        job
    }
}

impl TestApp {
    /// How many uploads are stored, counted in the storage folder (`t/<tenant>/uploads/<id>`).
    pub fn stored_uploads(&self) -> usize {
        self.stored_upload_sizes().len()
    }

    /// The sizes of the stored uploads, in bytes.
    pub fn stored_upload_sizes(&self) -> Vec<u64> {
        let Ok(tenants) = std::fs::read_dir(self.objects.join("t")) else {
            return Vec::new();
        };
        tenants
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_dir(t.path().join("uploads")).ok())
            .flat_map(|uploads| uploads.filter_map(Result::ok))
            .filter_map(|f| f.metadata().ok().map(|m| m.len()))
            .collect()
    }
}

/// The status and the JSON body of a response.
pub async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, json)
}

/// Asserts an `/v1` error body: code, reason and HTTP status.
pub fn assert_error(status: u16, body: &Value, http: u16, code: u64, reason: &str) {
    assert_eq!(status, http, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["details"].is_array(), "{body}");
}

/// One Server-Sent Event (or comment) as received.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<Value>,
    pub comment: Option<String>,
}

/// One frame from its text block.
pub fn parse_frame(block: &str) -> Frame {
    let mut frame = Frame::default();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix(':') {
            frame.comment = Some(rest.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => frame.id = Some(value.to_string()),
                "event" => frame.event = Some(value.to_string()),
                "data" => data.push_str(value),
                _ => {}
            }
        }
    }
    if !data.is_empty() {
        frame.data = Some(serde_json::from_str(&data).expect("data is JSON"));
    }
    frame
}

/// Reads a `text/event-stream` response frame by frame.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Reads `response`.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame; `None` once the stream ended. Fails the test if nothing moves for two minutes.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(&block));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(120), self.response.chunk())
                .await
                .expect("the event stream moves within two minutes")
                .expect("chunk")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// Frames until the stream ends or `stop` says so (that frame included).
    pub async fn until(&mut self, mut stop: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            let done = stop(&frame);
            frames.push(frame);
            if done {
                break;
            }
        }
        frames
    }
}

/// Reads frames until the stream ends or `stop` says so.
pub async fn read_frames(
    response: reqwest::Response,
    stop: impl FnMut(&Frame) -> bool,
) -> Vec<Frame> {
    SseReader::new(response).until(stop).await
}
