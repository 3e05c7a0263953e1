//! Fake model providers on 127.0.0.1:0 speaking the protocols of VolcEngine Ark, Alibaba DashScope
//! and RunningHub as documented, answering with real small PNGs served from the same server by URL.
//!
//! - Ark: `POST /api/v3/images/generations` (Bearer key) → `{"data": [{"url"}…], "usage"}`, the
//!   request id in `x-request-id`; errors `{"error": {"code", "message", "type"}}`.
//! - DashScope: `POST /api/v1/services/aigc/multimodal-generation/generation` →
//!   `{"output": {"choices": [{"message": {"content": [{"image"}]}}]}, "request_id"}`; with
//!   `X-DashScope-Async: enable` on `…/text2image/image-synthesis` or `…/image2image/image-synthesis`
//!   → `{"output": {"task_id", "task_status": "PENDING"}}`, then `GET /api/v1/tasks/{id}` answers
//!   RUNNING a few times and then SUCCEEDED with `output.results[].url`; errors `{"request_id",
//!   "code", "message"}`.
//! - RunningHub: `POST /task/openapi/upload` (multipart `apiKey`, `fileType`, `file`) →
//!   `data.fileName`; `POST /task/openapi/create` → `data.taskId`; `POST /task/openapi/status` →
//!   `data` QUEUED/RUNNING then SUCCESS; `POST /task/openapi/outputs` → `data[].fileUrl`; every
//!   answer `{"code", "msg", "data"}`.
//!
//! Tests steer them: fail the next submissions in the provider's own error shapes, hold submissions
//! at a gate to observe concurrency, and read every request and the arrival time of each submission.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::provider::{multipart_parts, picture, read_request, write_head, HttpRequest};

/// The API key every fake expects (`Authorization: Bearer`, or RunningHub's `apiKey` field).
pub const KEY: &str = "foreign-test-key";

/// Which provider a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// VolcEngine Ark.
    Ark,
    /// Alibaba DashScope.
    DashScope,
    /// RunningHub.
    RunningHub,
}

/// A failure the next submission answers, in the provider's own shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Throttled.
    RateLimited,
    /// Failed on its side.
    ServerError,
    /// The content moderation refused the prompt.
    Moderation,
    /// A parameter is invalid.
    InvalidParameter,
    /// The key is not accepted.
    BadKey,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `POST` or `GET`.
    pub method: String,
    /// The path.
    pub path: String,
    /// Headers as sent.
    pub headers: Vec<(String, String)>,
    /// The JSON body (or the multipart text fields as strings).
    pub json: Value,
    /// The multipart `file` part (RunningHub uploads).
    pub file: Option<Vec<u8>>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Task {
    polls_left: u32,
    urls: Vec<String>,
}

struct State {
    speaks: Speaks,
    addr: std::net::SocketAddr,
    serial: AtomicU32,
    images_made: AtomicU32,
    polls: AtomicU32,
    downloads: AtomicU32,
    running_polls: AtomicU32,
    images_per_run: AtomicU32,
    in_flight: watch::Sender<usize>,
    max_in_flight: AtomicUsize,
    failures: Mutex<VecDeque<Failure>>,
    gate: Mutex<Option<Arc<Semaphore>>>,
    seen: Mutex<Vec<Received>>,
    submissions: Mutex<Vec<Instant>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    tasks: Mutex<HashMap<String, Task>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fake provider; stops when dropped.
pub struct ForeignServer {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ForeignServer {
    /// Starts a server speaking `speaks` on a free port.
    pub async fn start(speaks: Speaks) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind foreign provider");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            speaks,
            addr,
            serial: AtomicU32::new(0),
            images_made: AtomicU32::new(0),
            polls: AtomicU32::new(0),
            downloads: AtomicU32::new(0),
            running_polls: AtomicU32::new(2),
            images_per_run: AtomicU32::new(1),
            in_flight: watch::channel(0).0,
            max_in_flight: AtomicUsize::new(0),
            failures: Mutex::new(VecDeque::new()),
            gate: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            submissions: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving)));
            }
        });
        Self { state, task }
    }

    /// The base URL to configure, `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// Every request received (image downloads excluded), in arrival order.
    pub fn seen(&self) -> Vec<Received> {
        lock(&self.state.seen).clone()
    }

    /// The requests to `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Received> {
        self.seen().into_iter().filter(|r| r.path == path).collect()
    }

    /// When each submission (a generation, a synchronous call, a task creation) arrived.
    pub fn submission_times(&self) -> Vec<Instant> {
        lock(&self.state.submissions).clone()
    }

    /// Submissions received so far, failed ones included.
    pub fn submissions(&self) -> usize {
        lock(&self.state.submissions).len()
    }

    /// Task status polls answered.
    pub fn polls(&self) -> u32 {
        self.state.polls.load(Ordering::SeqCst)
    }

    /// Images fetched from this server by URL.
    pub fn downloads(&self) -> u32 {
        self.state.downloads.load(Ordering::SeqCst)
    }

    /// Images made so far.
    pub fn images_made(&self) -> u32 {
        self.state.images_made.load(Ordering::SeqCst)
    }

    /// How many polls of a task answer "running" before it succeeds (2 unless set).
    pub fn set_running_polls(&self, n: u32) {
        self.state.running_polls.store(n, Ordering::SeqCst);
    }

    /// RunningHub: images one workflow run yields (1 unless set).
    pub fn set_images_per_run(&self, n: u32) {
        self.state.images_per_run.store(n, Ordering::SeqCst);
    }

    /// The next `n` submissions answer `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        lock(&self.state.failures).extend(std::iter::repeat_n(failure, n));
    }

    /// From now on each submission waits at a gate until released.
    pub fn hold(&self) {
        *lock(&self.state.gate) = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` held submissions through.
    pub fn release(&self, n: usize) {
        if let Some(gate) = lock(&self.state.gate).as_ref() {
            gate.add_permits(n);
        }
    }

    /// Opens the gate for good.
    pub fn release_all(&self) {
        if let Some(gate) = lock(&self.state.gate).take() {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// Waits until at least `n` submissions are in progress at once.
    pub async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.state.in_flight.subscribe();
        rx.wait_for(|now| *now >= n)
            .await
            .expect("foreign provider stopped");
    }

    /// Submissions in progress now.
    pub fn in_flight(&self) -> usize {
        *self.state.in_flight.borrow()
    }

    /// The most submissions ever in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for ForeignServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let mut now = 0;
        state.in_flight.send_modify(|n| {
            *n += 1;
            now = *n;
        });
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

type Answer = (u16, Vec<(String, String)>, Value);

async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    if request.method == "GET" && request.path.starts_with("/files/") {
        state.downloads.fetch_add(1, Ordering::SeqCst);
        let file = lock(&state.files).get(&request.path).cloned();
        let (status, body) = match file {
            Some(png) => (200, png),
            None => (404, b"not found".to_vec()),
        };
        let _ = write_head(&mut socket, status, "image/png", body.len()).await;
        let _ = socket.write_all(&body).await;
        let _ = socket.shutdown().await;
        return;
    }
    let received = parse(&request);
    lock(&state.seen).push(received.clone());
    let submission = is_submission(state.speaks, &received);
    let _in_flight = if submission {
        lock(&state.submissions).push(Instant::now());
        let gate = lock(&state.gate).clone();
        let guard = InFlight::enter(&state);
        if let Some(gate) = gate {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        Some(guard)
    } else {
        None
    };
    let (status, headers, body) = match state.speaks {
        Speaks::Ark => ark(&state, &received, submission),
        Speaks::DashScope => dashscope(&state, &received, submission),
        Speaks::RunningHub => runninghub(&state, &received, submission),
    };
    let body = body.to_string().into_bytes();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        crate::provider::reason(status),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&body).await;
    let _ = socket.shutdown().await;
}

fn is_submission(speaks: Speaks, r: &Received) -> bool {
    r.method == "POST"
        && match speaks {
            Speaks::Ark => r.path == "/api/v3/images/generations",
            Speaks::DashScope => r.path.starts_with("/api/v1/services/aigc/"),
            Speaks::RunningHub => r.path == "/task/openapi/create",
        }
}

fn parse(request: &HttpRequest) -> Received {
    let content_type = request.header("content-type").unwrap_or_default();
    let mut json = Value::Null;
    let mut file = None;
    if let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        let mut fields = serde_json::Map::new();
        for part in multipart_parts(&request.body, boundary.trim_matches('"')) {
            if part.name == "file" {
                file = Some(part.data);
            } else {
                let text = String::from_utf8_lossy(&part.data).into_owned();
                fields.insert(part.name, Value::String(text));
            }
        }
        json = Value::Object(fields);
    } else if let Ok(value) = serde_json::from_slice(&request.body) {
        json = value;
    }
    Received {
        method: request.method.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        json,
        file,
    }
}

fn next_serial(state: &State) -> u32 {
    state.serial.fetch_add(1, Ordering::SeqCst) + 1
}

/// Makes `n` PNGs of `size`, serves them under `/files/`, and returns their URLs.
fn make_images(state: &State, n: u32, size: (u32, u32)) -> Vec<String> {
    (0..n)
        .map(|_| {
            let serial = state.images_made.fetch_add(1, Ordering::SeqCst) + 1;
            let path = format!("/files/{serial}.png");
            lock(&state.files).insert(path.clone(), picture(size.0, size.1, serial));
            format!("http://{}{path}", state.addr)
        })
        .collect()
}

fn parse_size(size: Option<&str>, separator: char) -> (u32, u32) {
    size.and_then(|s| s.split_once(separator))
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .map_or((256, 256), |(w, h)| (w.clamp(16, 1024), h.clamp(16, 1024)))
}

fn bearer_ok(r: &Received) -> bool {
    r.header("authorization") == Some(&format!("Bearer {KEY}"))
}

fn ark_error(status: u16, code: &str, message: &str, id: &str) -> Answer {
    (
        status,
        vec![("x-request-id".into(), id.into())],
        json!({"error": {"code": code, "message": format!("{message} Request id: {id}"), "param": "", "type": "BadRequest"}}),
    )
}

fn ark(state: &State, r: &Received, submission: bool) -> Answer {
    let id = format!("ark-req-{}", next_serial(state));
    if !submission {
        return ark_error(404, "NotFound", "unknown route", &id);
    }
    if !bearer_ok(r) {
        return ark_error(
            401,
            "AuthenticationError",
            "The API key in the request is missing or invalid.",
            &id,
        );
    }
    if let Some(failure) = lock(&state.failures).pop_front() {
        return match failure {
            Failure::RateLimited => ark_error(
                429,
                "RateLimitExceeded.EndpointRPMExceeded",
                "Request rate exceeded the RPM limit of the endpoint.",
                &id,
            ),
            Failure::ServerError => ark_error(
                500,
                "InternalServiceError",
                "The service encountered an unexpected internal error.",
                &id,
            ),
            Failure::Moderation => ark_error(
                400,
                "InputTextSensitiveContentDetected",
                "The request failed because the input text may contain sensitive information.",
                &id,
            ),
            Failure::InvalidParameter => ark_error(
                400,
                "InvalidParameter",
                "The parameter `size` specified in the request is not valid.",
                &id,
            ),
            Failure::BadKey => ark_error(
                401,
                "AuthenticationError",
                "The API key in the request is missing or invalid.",
                &id,
            ),
        };
    }
    let body = &r.json;
    let model = body["model"].as_str().unwrap_or_default();
    let prompt = body["prompt"].as_str().unwrap_or_default();
    if model.is_empty() || prompt.is_empty() {
        return ark_error(
            400,
            "MissingParameter",
            "The request failed because it is missing `model` or `prompt`.",
            &id,
        );
    }
    let n = if body["sequential_image_generation"] == "auto" {
        body["sequential_image_generation_options"]["max_images"]
            .as_u64()
            .map_or(15, |n| u32::try_from(n).unwrap_or(15))
            .clamp(1, 15)
    } else {
        1
    };
    let size = parse_size(body["size"].as_str(), 'x');
    let urls = make_images(state, n, size);
    let b64 = body["response_format"] == "b64_json";
    let data: Vec<Value> = urls
        .iter()
        .map(|url| {
            if b64 {
                let path = url.rsplit_once(&state.addr.to_string()).map(|(_, p)| p);
                let png = path
                    .and_then(|p| lock(&state.files).get(p).cloned())
                    .unwrap_or_default();
                json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(png), "size": format!("{}x{}", size.0, size.1)})
            } else {
                json!({"url": url, "size": format!("{}x{}", size.0, size.1)})
            }
        })
        .collect();
    (
        200,
        vec![("x-request-id".into(), id)],
        json!({"model": model, "created": 1_757_000_000, "data": data,
               "usage": {"generated_images": n, "output_tokens": 16384 * n, "total_tokens": 16384 * n}}),
    )
}

fn ds_error(status: u16, code: &str, message: &str, id: &str) -> Answer {
    (
        status,
        Vec::new(),
        json!({"request_id": id, "code": code, "message": message}),
    )
}

fn ds_failure(failure: Failure, id: &str) -> Answer {
    match failure {
        Failure::RateLimited => ds_error(
            429,
            "Throttling.RateQuota",
            "Requests rate limit exceeded, please try again later.",
            id,
        ),
        Failure::ServerError => ds_error(
            500,
            "InternalError",
            "An internal error has occured, please try again later.",
            id,
        ),
        Failure::Moderation => ds_error(
            400,
            "DataInspectionFailed",
            "Input data may contain inappropriate content.",
            id,
        ),
        Failure::InvalidParameter => ds_error(
            400,
            "InvalidParameter",
            "The size is not match the allowed size.",
            id,
        ),
        Failure::BadKey => ds_error(401, "InvalidApiKey", "Invalid API-key provided.", id),
    }
}

fn dashscope(state: &State, r: &Received, submission: bool) -> Answer {
    let id = format!("ds-req-{}", next_serial(state));
    if !bearer_ok(r) {
        return ds_failure(Failure::BadKey, &id);
    }
    if r.method == "GET" {
        if let Some(task_id) = r.path.strip_prefix("/api/v1/tasks/") {
            state.polls.fetch_add(1, Ordering::SeqCst);
            let mut tasks = lock(&state.tasks);
            let Some(task) = tasks.get_mut(task_id) else {
                return ds_error(404, "InvalidParameter", "task not found", &id);
            };
            if task.polls_left > 0 {
                task.polls_left -= 1;
                return (
                    200,
                    Vec::new(),
                    json!({"request_id": id, "output": {"task_id": task_id, "task_status": "RUNNING",
                           "submit_time": "2025-09-01 10:00:00.000"}}),
                );
            }
            let results: Vec<Value> = task.urls.iter().map(|u| json!({"url": u})).collect();
            let n = results.len();
            return (
                200,
                Vec::new(),
                json!({"request_id": id, "output": {"task_id": task_id, "task_status": "SUCCEEDED",
                       "results": results, "task_metrics": {"TOTAL": n, "SUCCEEDED": n, "FAILED": 0}},
                       "usage": {"image_count": n}}),
            );
        }
    }
    if !submission {
        return ds_error(404, "InvalidParameter", "url error, please check url", &id);
    }
    if let Some(failure) = lock(&state.failures).pop_front() {
        return ds_failure(failure, &id);
    }
    let body = &r.json;
    let model = body["model"].as_str().unwrap_or_default();
    let parameters = &body["parameters"];
    let n = parameters["n"]
        .as_u64()
        .map_or(1, |n| u32::try_from(n).unwrap_or(1))
        .clamp(1, 6);
    let size = parse_size(parameters["size"].as_str(), '*');
    let asynchronous = r.header("x-dashscope-async") == Some("enable");
    if r.path.ends_with("/multimodal-generation/generation") {
        if asynchronous {
            return ds_error(
                400,
                "InvalidParameter",
                "current user api does not support asynchronous calls",
                &id,
            );
        }
        let content = &body["input"]["messages"][0]["content"];
        let has_text = content
            .as_array()
            .is_some_and(|c| c.iter().any(|p| p["text"].as_str().is_some()));
        if model.is_empty() || !has_text {
            return ds_error(
                400,
                "InvalidParameter",
                "Model not exist or the input is empty.",
                &id,
            );
        }
        let urls = make_images(state, n, size);
        let content: Vec<Value> = urls.iter().map(|u| json!({"image": u})).collect();
        return (
            200,
            Vec::new(),
            json!({"output": {"choices": [{"finish_reason": "stop",
                   "message": {"role": "assistant", "content": content}}]},
                   "usage": {"width": size.0, "height": size.1, "image_count": n},
                   "request_id": id}),
        );
    }
    if !asynchronous {
        return ds_error(
            403,
            "AccessDenied",
            "current user api does not support synchronous calls",
            &id,
        );
    }
    if model.is_empty() || body["input"]["prompt"].as_str().is_none() {
        return ds_error(400, "InvalidParameter", "input.prompt is required", &id);
    }
    let task_id = format!("task-{}", next_serial(state));
    let urls = make_images(state, n, size);
    lock(&state.tasks).insert(
        task_id.clone(),
        Task {
            polls_left: state.running_polls.load(Ordering::SeqCst),
            urls,
        },
    );
    (
        200,
        Vec::new(),
        json!({"request_id": id, "output": {"task_id": task_id, "task_status": "PENDING"}}),
    )
}

fn rh(code: i64, msg: &str, data: Value) -> Answer {
    (
        200,
        Vec::new(),
        json!({"code": code, "msg": msg, "data": data}),
    )
}

fn rh_failure(failure: Failure) -> Answer {
    match failure {
        Failure::RateLimited => rh(421, "TASK_QUEUE_MAXED", Value::Null),
        Failure::ServerError => (
            500,
            Vec::new(),
            json!({"code": 500, "msg": "SERVER_ERROR", "data": null}),
        ),
        Failure::Moderation => rh(1011, "CONTENT_SENSITIVE", Value::Null),
        Failure::InvalidParameter => rh(301, "PARAMS_INVALID", Value::Null),
        Failure::BadKey => rh(412, "TOKEN_INVALID", Value::Null),
    }
}

fn runninghub(state: &State, r: &Received, submission: bool) -> Answer {
    if r.method != "POST" {
        return (404, Vec::new(), json!({"code": 404, "msg": "NOT_FOUND"}));
    }
    if r.json["apiKey"].as_str() != Some(KEY) {
        return rh_failure(Failure::BadKey);
    }
    if submission {
        if let Some(failure) = lock(&state.failures).pop_front() {
            return rh_failure(failure);
        }
    }
    match r.path.as_str() {
        "/task/openapi/upload" => {
            if r.file.is_none() || r.json["fileType"].as_str() != Some("image") {
                return rh(301, "PARAMS_INVALID", Value::Null);
            }
            let name = format!("api/{}.png", next_serial(state));
            rh(0, "success", json!({"fileName": name, "fileType": "image"}))
        }
        "/task/openapi/create" => {
            let workflow = r.json["workflowId"].as_str().unwrap_or_default();
            let nodes = r.json["nodeInfoList"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let well_formed = nodes.iter().all(|n| {
                n["nodeId"].as_str().is_some()
                    && n["fieldName"].as_str().is_some()
                    && !n["fieldValue"].is_null()
            });
            if workflow.is_empty() {
                return rh(380, "WORKFLOW_NOT_EXISTS", Value::Null);
            }
            if !well_formed {
                return rh(803, "APIKEY_INVALID_NODE_INFO", Value::Null);
            }
            let task_id = format!("19{:016}", next_serial(state));
            let urls = make_images(
                state,
                state.images_per_run.load(Ordering::SeqCst),
                (256, 256),
            );
            lock(&state.tasks).insert(
                task_id.clone(),
                Task {
                    polls_left: state.running_polls.load(Ordering::SeqCst),
                    urls,
                },
            );
            rh(
                0,
                "success",
                json!({"netWssUrl": null, "taskId": task_id, "clientId": "c", "taskStatus": "QUEUED", "promptTips": "{\"node_errors\": {}}"}),
            )
        }
        "/task/openapi/status" => {
            state.polls.fetch_add(1, Ordering::SeqCst);
            let task_id = r.json["taskId"].as_str().unwrap_or_default();
            let mut tasks = lock(&state.tasks);
            match tasks.get_mut(task_id) {
                None => rh(807, "APIKEY_TASK_NOT_FOUND", Value::Null),
                Some(task) if task.polls_left > 0 => {
                    task.polls_left -= 1;
                    rh(0, "success", Value::from("RUNNING"))
                }
                Some(_) => rh(0, "success", Value::from("SUCCESS")),
            }
        }
        "/task/openapi/outputs" => {
            let task_id = r.json["taskId"].as_str().unwrap_or_default();
            let tasks = lock(&state.tasks);
            match tasks.get(task_id) {
                None => rh(807, "APIKEY_TASK_NOT_FOUND", Value::Null),
                Some(task) if task.polls_left > 0 => rh(804, "APIKEY_TASK_IS_RUNNING", Value::Null),
                Some(task) => {
                    let data: Vec<Value> = task
                        .urls
                        .iter()
                        .map(|u| json!({"fileUrl": u, "fileType": "png", "taskCostTime": "12", "nodeId": "9"}))
                        .collect();
                    rh(0, "success", Value::from(data))
                }
            }
        }
        _ => (404, Vec::new(), json!({"code": 404, "msg": "NOT_FOUND"})),
    }
}
