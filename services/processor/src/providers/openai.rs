//! The OpenAI-compatible Images API adapter: `POST {base}/images/generations` (JSON) and
//! `POST {base}/images/edits` (multipart), answers `{"data": [{"b64_json"} | {"url"}]}`.
//!
//! Calls to one provider are limited by a semaphore shared by every task of this processor. Image URLs
//! in answers are fetched through the guarded [`Downloader`], with the same address checks as sources.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_engine::Format;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::config::WorkflowConfig;
use super::{ModelConfig, Protocol, ProviderConfig, ProviderError, Secret};
use crate::download::Downloader;
use crate::metrics::{Metrics, ProviderLabels, ProviderResultLabels};

/// Largest answer read from a provider (four large base64 PNGs fit).
const MAX_RESPONSE_BYTES: u64 = 96 * 1024 * 1024;

/// Error codes OpenAI (and compatible servers) use for a safety refusal.
const REFUSAL_CODES: [&str; 3] = [
    "content_policy_violation",
    "moderation_blocked",
    "content_filter",
];

/// One image request: generations when `image` is unset, edits when it is set.
#[derive(Clone, Debug)]
pub struct ImageCall<'a> {
    /// The provider's model name.
    pub model: &'a str,
    /// The prompt, whitespace already normalised.
    pub prompt: &'a str,
    /// Sent as the `negative_prompt` extra when not empty.
    pub negative_prompt: &'a str,
    /// Images wanted.
    pub n: u32,
    /// `WIDTHxHEIGHT`, or the provider's default.
    pub size: Option<(u32, u32)>,
    /// Sent as the `seed` extra when set.
    pub seed: Option<i64>,
    /// Sent as the `steps` extra when not 0.
    pub steps: u32,
    /// Sent as the `guidance_scale` extra when not 0.
    pub guidance_scale: f32,
    /// The input image of an edit.
    pub image: Option<(&'a [u8], Format)>,
}

/// An image in a provider's answer, before URLs are fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderImage {
    /// Decoded `b64_json`.
    Bytes(Bytes),
    /// A `url` to fetch.
    Url(String),
}

/// What a provider call produced: images (URLs already fetched) and the provider's request id.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// The images, in the provider's order.
    pub images: Vec<Bytes>,
    /// The id the provider gave the request or task, for the task's log.
    pub request_id: Option<String>,
}

/// A provider's answer before URLs are fetched.
#[derive(Clone, Debug, Default)]
pub(super) struct Answer {
    pub(super) images: Vec<ProviderImage>,
    pub(super) request_id: Option<String>,
}

impl From<Vec<ProviderImage>> for Answer {
    fn from(images: Vec<ProviderImage>) -> Self {
        Self {
            images,
            request_id: None,
        }
    }
}

/// Requests per minute as a token bucket holding one second's worth (at least one token): calls
/// wait for a token in arrival order, so waiting is never an error.
struct TokenBucket {
    per_second: f64,
    capacity: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(per_minute: u32) -> Self {
        let per_second = f64::from(per_minute) / 60.0;
        let capacity = per_second.ceil().max(1.0);
        Self {
            per_second,
            capacity,
            state: tokio::sync::Mutex::new((capacity, Instant::now())),
        }
    }

    async fn take(&self) {
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let refill = now.duration_since(state.1).as_secs_f64() * self.per_second;
            *state = ((state.0 + refill).min(self.capacity), now);
            if state.0 >= 1.0 {
                state.0 -= 1.0;
                return;
            }
            let wait = (1.0 - state.0) / self.per_second;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// One configured provider (any protocol; the remote matting calls are in `super::matting`).
pub struct Provider {
    pub(super) name: String,
    pub(super) protocol: Protocol,
    pub(super) base_url: String,
    pub(super) api_key: Option<Secret>,
    models: Vec<ModelConfig>,
    max_concurrency: u32,
    limit: Semaphore,
    pub(super) timeout: Duration,
    pub(super) client: reqwest::Client,
    downloader: Downloader,
    metrics: Arc<Metrics>,
    /// remove.bg's output `size`.
    pub(super) size: String,
    /// Set when the provider refused the configured key: no longer offered.
    key_rejected: AtomicBool,
    bucket: Option<TokenBucket>,
    upstream_models: std::collections::BTreeMap<String, String>,
    pub(super) async_models: Vec<String>,
    pub(super) poll_interval: Duration,
    pub(super) workflows: Vec<WorkflowConfig>,
    /// Ark's `response_format`: `url` or `b64_json`.
    pub(super) response_format: String,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("base_url", &self.base_url)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The adapter for a validated configuration.
    pub fn new(
        config: ProviderConfig,
        downloader: Downloader,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProviderError> {
        let timeout = Duration::try_from_secs_f64(config.timeout_seconds).map_err(|e| {
            ProviderError::Setup {
                provider: config.name.clone(),
                message: format!("timeout_seconds: {e}"),
            }
        })?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .user_agent(concat!("atelier-processor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Setup {
                provider: config.name.clone(),
                message: e.to_string(),
            })?;
        let limit = usize::try_from(config.max_concurrency).unwrap_or(1).max(1);
        // A gauge at 0 from the start, so the series exists before the first call.
        metrics
            .provider_calls_in_flight
            .get_or_create(&ProviderLabels {
                provider: config.name.clone(),
            })
            .set(0);
        let size = config.remove_bg_size().to_string();
        Ok(Self {
            key_rejected: AtomicBool::new(false),
            bucket: config.requests_per_minute.map(TokenBucket::new),
            upstream_models: config.upstream_models,
            async_models: config.async_models,
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(1)),
            workflows: config.workflows,
            response_format: config.response_format.unwrap_or_else(|| "url".into()),
            base_url: config.base_url.trim().trim_end_matches('/').to_string(),
            size,
            protocol: config.protocol,
            name: config.name,
            api_key: config.api_key,
            models: config.models,
            max_concurrency: config.max_concurrency,
            limit: Semaphore::new(limit),
            timeout,
            client,
            downloader,
            metrics,
        })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API it speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The models and their kinds.
    pub fn models(&self) -> &[ModelConfig] {
        &self.models
    }

    /// Calls allowed in flight at once.
    pub fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// Whether the provider is offered: false once it has refused its key.
    pub fn available(&self) -> bool {
        !self.key_rejected.load(Ordering::SeqCst)
    }

    /// The name the provider knows model `id` by.
    pub fn upstream_model<'a>(&'a self, id: &'a str) -> &'a str {
        self.upstream_models.get(id).map_or(id, String::as_str)
    }

    /// The RunningHub workflow of model `id`.
    pub(super) fn workflow(&self, id: &str) -> Option<&WorkflowConfig> {
        self.workflows.iter().find(|w| w.model == id)
    }

    /// Images one call of `model` yields at most (RunningHub workflows: `images_per_run`).
    pub fn images_per_call(&self, model: &str) -> Option<u32> {
        match self.protocol {
            Protocol::RunningHub => self.workflow(model).map(|w| w.images_per_run),
            _ => None,
        }
    }

    /// Runs the call (waiting for a free slot and a rate token first) and returns the image bytes,
    /// URLs fetched through the guarded downloader, with the time the provider call itself took
    /// (waiting for a slot or a token and fetching result URLs excluded). `call.model` is the
    /// configured model id.
    pub async fn images(&self, call: &ImageCall<'_>) -> (Result<Reply, ProviderError>, Duration) {
        let upstream = ImageCall {
            model: self.upstream_model(call.model),
            ..call.clone()
        };
        let (answer, took) = self.limited(&upstream, call.model).await;
        let fetched = async {
            let answer = answer?;
            let mut images = Vec::with_capacity(answer.images.len());
            for image in answer.images {
                images.push(match image {
                    ProviderImage::Bytes(bytes) => bytes,
                    ProviderImage::Url(url) => self.fetch(&url).await?,
                });
            }
            Ok(Reply {
                images,
                request_id: answer.request_id,
            })
        }
        .await;
        (fetched, took)
    }

    async fn limited(
        &self,
        call: &ImageCall<'_>,
        id: &str,
    ) -> (Result<Answer, ProviderError>, Duration) {
        match self.protocol {
            Protocol::OpenAi => {
                self.guarded_timed(call.model, async {
                    self.send(call).await.map(Answer::from)
                })
                .await
            }
            Protocol::Ark => self.guarded_timed(call.model, self.ark(call)).await,
            Protocol::DashScope => self.guarded_timed(call.model, self.dashscope(call)).await,
            Protocol::RunningHub => {
                self.guarded_timed(call.model, self.runninghub(call, id))
                    .await
            }
            Protocol::RemoveBg | Protocol::Rembg => (
                Err(ProviderError::Setup {
                    provider: self.name.clone(),
                    message: format!(
                        "protocol {} has no image edits or generations",
                        self.protocol.as_str()
                    ),
                }),
                Duration::ZERO,
            ),
        }
    }

    /// The `Authorization: Bearer` value, when a key is configured.
    pub(super) fn bearer(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.header(AUTHORIZATION, format!("Bearer {}", key.expose())),
            None => request,
        }
    }

    /// Runs one call: waits for a free slot (the provider's `max_concurrency`, shared by every task
    /// of this processor), counts it in the metrics, and gives up after the configured timeout.
    pub(super) async fn guarded<T>(
        &self,
        model: &str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        self.guarded_timed(model, call).await.0
    }

    /// [`Provider::guarded`], also telling how long the call took once it had its slot and token.
    pub(super) async fn guarded_timed<T>(
        &self,
        model: &str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> (Result<T, ProviderError>, Duration) {
        let Ok(_slot) = self.limit.acquire().await else {
            let closed = ProviderError::Setup {
                provider: self.name.clone(),
                message: "the call limiter is closed".into(),
            };
            return (Err(closed), Duration::ZERO);
        };
        if let Some(bucket) = &self.bucket {
            bucket.take().await;
        }
        let mut counted = CountedCall::start(&self.metrics, &self.name);
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                provider: self.name.clone(),
                after: self.timeout,
            }),
        };
        let took = started.elapsed();
        counted.result = match &result {
            Ok(_) => "ok",
            Err(e) => e.metric_result(),
        };
        drop(counted);
        if let Err(ProviderError::KeyRejected { .. }) = &result {
            if !self.key_rejected.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    provider = %self.name,
                    "the provider rejected its API key; it is no longer offered until the \
                     configuration changes"
                );
            }
        }
        match &result {
            Ok(_) => tracing::info!(provider = %self.name, model, "provider call answered"),
            Err(e) => {
                tracing::warn!(provider = %self.name, model, error = %e, "provider call failed")
            }
        }
        (result, took)
    }

    async fn send(&self, call: &ImageCall<'_>) -> Result<Vec<ProviderImage>, ProviderError> {
        let request = match call.image {
            None => self
                .client
                .post(format!("{}/images/generations", self.base_url))
                .json(&generation_body(call)),
            Some((image, format)) => {
                let boundary = format!("atelier-{}", uuid::Uuid::new_v4().simple());
                self.client
                    .post(format!("{}/images/edits", self.base_url))
                    .header(
                        CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(edit_body(call, image, format, &boundary))
            }
        };
        let request = match &self.api_key {
            Some(key) => request.header(AUTHORIZATION, format!("Bearer {}", key.expose())),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.network(&e))?;
        let status = response.status().as_u16();
        let body = self.read_capped(response).await?;
        if (200..300).contains(&status) {
            return self.parse_data(&body);
        }
        let (message, code) = error_of(&body);
        let provider = self.name.clone();
        Err(match status {
            401 => ProviderError::KeyRejected {
                provider,
                message: format!("HTTP 401: {message}"),
            },
            429 => ProviderError::RateLimited {
                provider,
                message,
                retry_after: None,
            },
            500..=599 => ProviderError::Server {
                provider,
                status,
                message,
            },
            400..=499 if code.as_deref().is_some_and(|c| REFUSAL_CODES.contains(&c)) => {
                ProviderError::Refused { provider, message }
            }
            _ => ProviderError::Rejected {
                provider,
                status,
                message,
            },
        })
    }

    /// The answer's body, refused beyond [`MAX_RESPONSE_BYTES`].
    pub(super) async fn read_capped(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Bytes, ProviderError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.network(&e))? {
            if (body.len() as u64).saturating_add(chunk.len() as u64) > MAX_RESPONSE_BYTES {
                return Err(ProviderError::BadResponse {
                    provider: self.name.clone(),
                    message: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn parse_data(&self, body: &[u8]) -> Result<Vec<ProviderImage>, ProviderError> {
        let bad = |message: String| ProviderError::BadResponse {
            provider: self.name.clone(),
            message,
        };
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `data` list".into()))?;
        if data.is_empty() {
            return Err(bad("an empty `data` list".into()));
        }
        data.iter()
            .map(|item| {
                if let Some(b64) = item.get("b64_json").and_then(Value::as_str) {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map(|b| ProviderImage::Bytes(Bytes::from(b)))
                        .map_err(|e| bad(format!("b64_json is not base64: {e}")))
                } else if let Some(url) = item.get("url").and_then(Value::as_str) {
                    Ok(ProviderImage::Url(url.to_string()))
                } else {
                    Err(bad("an image with neither b64_json nor url".into()))
                }
            })
            .collect()
    }

    pub(super) async fn fetch(&self, url: &str) -> Result<Bytes, ProviderError> {
        self.downloader.fetch(url).await.map_err(|e| {
            let message = format!("fetching the image it returned: {e}");
            if e.is_transient() {
                ProviderError::Network {
                    provider: self.name.clone(),
                    message,
                }
            } else {
                ProviderError::BadImage {
                    provider: self.name.clone(),
                    message,
                }
            }
        })
    }

    /// A transport error as a (transient) provider error.
    pub(super) fn network(&self, err: &reqwest::Error) -> ProviderError {
        if err.is_timeout() {
            return ProviderError::Timeout {
                provider: self.name.clone(),
                after: self.timeout,
            };
        }
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(e) = source {
            message.push_str(": ");
            message.push_str(&e.to_string());
            source = e.source();
        }
        ProviderError::Network {
            provider: self.name.clone(),
            message,
        }
    }
}

/// A call in the metrics: in flight while it lives, then counted with its result ("cancelled" when the
/// task was dropped mid-call).
struct CountedCall<'a> {
    metrics: &'a Metrics,
    provider: &'a str,
    in_flight: prometheus_client::metrics::gauge::Gauge,
    result: &'static str,
}

impl<'a> CountedCall<'a> {
    fn start(metrics: &'a Metrics, provider: &'a str) -> Self {
        let in_flight = metrics
            .provider_calls_in_flight
            .get_or_create_owned(&ProviderLabels {
                provider: provider.to_string(),
            });
        in_flight.inc();
        Self {
            metrics,
            provider,
            in_flight,
            result: "cancelled",
        }
    }
}

impl Drop for CountedCall<'_> {
    fn drop(&mut self) {
        self.in_flight.dec();
        self.metrics
            .provider_calls
            .get_or_create(&ProviderResultLabels {
                provider: self.provider.to_string(),
                result: self.result,
            })
            .inc();
    }
}

fn generation_body(call: &ImageCall<'_>) -> Value {
    let mut body = json!({
        "model": call.model,
        "prompt": call.prompt,
        "n": call.n,
        "response_format": "b64_json",
    });
    for (key, value) in extras(call) {
        body[key] = value;
    }
    body
}

/// The fields beyond the OpenAI core that compatible servers read.
fn extras(call: &ImageCall<'_>) -> Vec<(&'static str, Value)> {
    let mut extras = Vec::new();
    if let Some((w, h)) = call.size {
        extras.push(("size", Value::String(format!("{w}x{h}"))));
    }
    if !call.negative_prompt.is_empty() {
        extras.push(("negative_prompt", Value::from(call.negative_prompt)));
    }
    if let Some(seed) = call.seed {
        extras.push(("seed", Value::from(seed)));
    }
    if call.steps > 0 {
        extras.push(("steps", Value::from(call.steps)));
    }
    if call.guidance_scale > 0.0 {
        extras.push((
            "guidance_scale",
            Value::from(f64::from(call.guidance_scale)),
        ));
    }
    extras
}

fn edit_body(call: &ImageCall<'_>, image: &[u8], format: Format, boundary: &str) -> Vec<u8> {
    let mut fields: Vec<(&str, String)> = vec![
        ("model", call.model.to_string()),
        ("prompt", call.prompt.to_string()),
        ("n", call.n.to_string()),
        ("response_format", "b64_json".to_string()),
    ];
    for (key, value) in extras(call) {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        fields.push((key, text));
    }
    let mut body = Vec::with_capacity(image.len() + 1024);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"image.{}\"\r\nContent-Type: {}\r\n\r\n",
            format.extension(),
            format.content_type()
        )
        .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The error message and code of an OpenAI error body, or the start of whatever was sent.
fn error_of(body: &[u8]) -> (String, Option<String>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            if text.trim().is_empty() {
                "no details".to_string()
            } else {
                text
            }
        });
    let code = error
        .and_then(|e| e.get("code").or_else(|| e.get("type")))
        .and_then(Value::as_str)
        .map(str::to_string);
    (message, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ImageCall<'static> {
        ImageCall {
            model: "m",
            prompt: "a red shoe",
            negative_prompt: "",
            n: 2,
            size: Some((512, 256)),
            seed: Some(7),
            steps: 0,
            guidance_scale: 0.0,
            image: None,
        }
    }

    #[test]
    fn generation_bodies_carry_the_extras_that_are_set() {
        let body = generation_body(&call());
        assert_eq!(body["size"], "512x256");
        assert_eq!(body["seed"], 7);
        assert_eq!(body["n"], 2);
        assert!(body.get("steps").is_none());
        assert!(body.get("negative_prompt").is_none());
    }

    #[test]
    fn refusals_are_read_from_the_error_code() {
        let body =
            br#"{"error": {"message": "rejected by safety", "code": "content_policy_violation"}}"#;
        let (message, code) = error_of(body);
        assert_eq!(message, "rejected by safety");
        assert_eq!(code.as_deref(), Some("content_policy_violation"));
        let (message, code) = error_of(b"upstream exploded");
        assert_eq!(message, "upstream exploded");
        assert_eq!(code, None);
    }

    #[test]
    fn edit_bodies_are_multipart() {
        let body = edit_body(&call(), b"\x89PNG", Format::Png, "B");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("--B\r\nContent-Disposition: form-data; name=\"model\""));
        assert!(text.contains("name=\"image\"; filename=\"image.png\"\r\nContent-Type: image/png"));
        assert!(text.ends_with("\r\n--B--\r\n"));
    }
}
