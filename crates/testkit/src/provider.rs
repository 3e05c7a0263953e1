//! A fake model provider on 127.0.0.1:0 speaking the OpenAI Images API (`POST /v1/images/generations`
//! as JSON, `POST /v1/images/edits` as multipart), answering with real small PNGs, distinct per call.
//!
//! Tests steer it: answer 429/500 for the next N calls, refuse prompts containing a marker with
//! OpenAI's content-policy error, answer with `url` instead of `b64_json` (serving the image itself),
//! and hold calls at a gate so that concurrency is observed without sleeps.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use image::{ImageFormat, Rgb, RgbImage};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The API key the fake provider expects as `Authorization: Bearer <key>`.
pub const API_KEY: &str = "sk-atelier-test-key";

/// Largest request body read (a 10 MiB source in a multipart edit fits).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Image side used when the request names no size.
const DEFAULT_SIDE: u32 = 256;

/// One call the provider received.
#[derive(Clone, Debug)]
pub struct SeenCall {
    /// `/v1/images/generations` or `/v1/images/edits`.
    pub path: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// Every non-file field: JSON body keys, or multipart text fields (as strings).
    pub fields: serde_json::Map<String, Value>,
    /// Bytes of the multipart `image` part, for edits.
    pub image: Option<Vec<u8>>,
}

impl SeenCall {
    /// A field as text (strings as they are, numbers printed).
    pub fn field(&self, name: &str) -> Option<String> {
        match self.fields.get(name)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The fake provider; stops when dropped.
pub struct ProviderServer {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    addr: std::net::SocketAddr,
    calls: AtomicU32,
    images_made: AtomicU32,
    in_flight: watch::Sender<usize>,
    abandoned: watch::Sender<usize>,
    max_in_flight: AtomicUsize,
    failures: Mutex<VecDeque<u16>>,
    refuse_marker: Mutex<Option<String>>,
    answer_with_urls: AtomicBool,
    canned: Mutex<Option<Vec<u8>>>,
    gate: Mutex<Option<Arc<Semaphore>>>,
    seen: Mutex<Vec<SeenCall>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProviderServer {
    /// Starts serving on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind provider server");
        let addr = listener.local_addr().expect("provider addr");
        let state = Arc::new(State {
            addr,
            calls: AtomicU32::new(0),
            images_made: AtomicU32::new(0),
            in_flight: watch::channel(0).0,
            abandoned: watch::channel(0).0,
            max_in_flight: AtomicUsize::new(0),
            failures: Mutex::new(VecDeque::new()),
            refuse_marker: Mutex::new(None),
            answer_with_urls: AtomicBool::new(false),
            canned: Mutex::new(None),
            gate: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving)));
            }
        });
        Self { addr, state, task }
    }

    /// The base URL to configure, `http://127.0.0.1:port/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Image API calls received so far (generations and edits, refused and failed ones included).
    pub fn calls(&self) -> u32 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The most calls ever in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Calls in progress now.
    pub fn in_flight(&self) -> usize {
        *self.state.in_flight.borrow()
    }

    /// Calls whose client hung up before the answer.
    pub fn abandoned(&self) -> usize {
        *self.state.abandoned.borrow()
    }

    /// Waits until at least `n` clients hung up before their answer.
    pub async fn wait_abandoned(&self, n: usize) {
        let mut rx = self.state.abandoned.subscribe();
        rx.wait_for(|now| *now >= n)
            .await
            .expect("provider server stopped");
    }

    /// Every call received, in arrival order.
    pub fn seen(&self) -> Vec<SeenCall> {
        lock(&self.state.seen).clone()
    }

    /// The next `n` calls answer HTTP `status` (429 or 5xx) with an OpenAI error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        lock(&self.state.failures).extend(std::iter::repeat_n(status, n));
    }

    /// Prompts containing `marker` are refused with OpenAI's 400 `content_policy_violation`.
    pub fn refuse_prompts_containing(&self, marker: &str) {
        *lock(&self.state.refuse_marker) = Some(marker.to_string());
    }

    /// Answer with `{"url": …}` pointing at this server instead of `b64_json`.
    pub fn answer_with_urls(&self, on: bool) {
        self.state.answer_with_urls.store(on, Ordering::SeqCst);
    }

    /// Answer every image with these bytes instead of a generated PNG (e.g. something that is not an
    /// image); `None` goes back to real PNGs.
    pub fn answer_with_bytes(&self, bytes: Option<Vec<u8>>) {
        *lock(&self.state.canned) = bytes;
    }

    /// From now on each call waits at a gate until [`ProviderServer::release`] lets it through (its
    /// status line and headers are sent at once, its body after the gate).
    pub fn hold(&self) {
        *lock(&self.state.gate) = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` held calls (present or future) answer.
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

    /// Waits until at least `n` calls are in progress at once.
    pub async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.state.in_flight.subscribe();
        rx.wait_for(|now| *now >= n)
            .await
            .expect("provider server stopped");
    }
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed HTTP/1.1 request.
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let image_call = request.method == "POST"
        && matches!(
            request.path.as_str(),
            "/v1/images/generations" | "/v1/images/edits"
        );
    if !image_call {
        let (status, content_type, body) = match (request.method.as_str(), request.path.as_str()) {
            ("GET", path) if path.starts_with("/files/") => match lock(&state.files).get(path) {
                Some(png) => (200, "image/png", png.clone()),
                None => (
                    404,
                    "application/json",
                    error_body("no such file", "not_found"),
                ),
            },
            _ => (
                404,
                "application/json",
                error_body("unknown route", "not_found"),
            ),
        };
        let _ = write_head(&mut socket, status, content_type, body.len()).await;
        let _ = socket.write_all(&body).await;
        let _ = socket.shutdown().await;
        return;
    }
    state.calls.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state);
    let (status, content_type, body) = images_call(&state, &request);
    // A held call has its head sent at once and its body only when released, so a client that gives
    // up while waiting hangs up mid-answer, which is seen here.
    if write_head(&mut socket, status, content_type, body.len())
        .await
        .is_err()
    {
        return;
    }
    let gate = lock(&state.gate).clone();
    if let Some(gate) = gate {
        tokio::select! {
            permit = gate.acquire() => {
                if let Ok(permit) = permit {
                    permit.forget();
                }
            }
            () = hung_up(&mut socket) => {
                state.abandoned.send_modify(|n| *n += 1);
                return;
            }
        }
    }
    let _ = socket.write_all(&body).await;
    let _ = socket.shutdown().await;
}

pub(crate) async fn write_head(
    socket: &mut TcpStream,
    status: u16,
    content_type: &str,
    length: usize,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n",
        reason(status),
    );
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await
}

/// Resolves when the client closes the connection (it sends nothing more while it waits).
pub(crate) async fn hung_up(socket: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = socket.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

/// Counts the call as in flight for as long as it is being answered.
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

fn images_call(state: &State, request: &HttpRequest) -> (u16, &'static str, Vec<u8>) {
    let call = parse_call(request);
    lock(&state.seen).push(call.clone());

    const JSON: &str = "application/json";
    if call.authorization.as_deref() != Some(&format!("Bearer {API_KEY}")) {
        let body = error_body("Incorrect API key provided", "invalid_api_key");
        return (401, JSON, body);
    }
    if let Some(status) = lock(&state.failures).pop_front() {
        let (message, code) = if status == 429 {
            (
                "Rate limit reached for images per minute",
                "rate_limit_exceeded",
            )
        } else {
            (
                "The server had an error while processing your request",
                "server_error",
            )
        };
        return (status, JSON, error_body(message, code));
    }
    let prompt = call.field("prompt").unwrap_or_default();
    let marker = lock(&state.refuse_marker).clone();
    if marker.is_some_and(|m| prompt.contains(&m)) {
        let body = json!({"error": {
            "message": "Your request was rejected as a result of our safety system.",
            "type": "image_generation_user_error",
            "param": null,
            "code": "content_policy_violation",
        }});
        return (400, JSON, body.to_string().into_bytes());
    }
    if prompt.trim().is_empty() {
        return (
            400,
            JSON,
            error_body("prompt is required", "invalid_request"),
        );
    }
    if call.path.ends_with("/edits") && call.image.is_none() {
        return (
            400,
            JSON,
            error_body("image is required", "invalid_request"),
        );
    }
    let n = call
        .field("n")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 10);
    let (width, height) = call
        .field("size")
        .and_then(|s| parse_size(&s))
        .unwrap_or((DEFAULT_SIDE, DEFAULT_SIDE));
    let urls = state.answer_with_urls.load(Ordering::SeqCst);
    let mut data = Vec::new();
    for _ in 0..n {
        let serial = state.images_made.fetch_add(1, Ordering::SeqCst) + 1;
        let canned = lock(&state.canned).clone();
        let png = canned.unwrap_or_else(|| picture(width, height, serial));
        if urls {
            let path = format!("/files/{serial}.png");
            lock(&state.files).insert(path.clone(), png);
            data.push(json!({"url": format!("http://{}{path}", state.addr)}));
        } else {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
            data.push(json!({"b64_json": b64}));
        }
    }
    let body = json!({"created": 1_700_000_000, "data": data});
    (200, JSON, body.to_string().into_bytes())
}

fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
    Some((w.clamp(16, 1024), h.clamp(16, 1024)))
}

/// A real PNG whose colours depend on `serial`, so no two calls answer the same bytes.
pub(crate) fn picture(width: u32, height: u32, serial: u32) -> Vec<u8> {
    let tint = serial.wrapping_mul(37);
    let img = RgbImage::from_fn(width, height, |x, y| {
        let band = (x * 8 / width.max(1)) as u8;
        Rgb([
            (tint % 256) as u8,
            band.wrapping_mul(30),
            ((y * 255) / height.max(1)) as u8 ^ (serial % 256) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encode provider image");
    out.into_inner()
}

fn error_body(message: &str, code: &str) -> Vec<u8> {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn parse_call(request: &HttpRequest) -> SeenCall {
    let mut fields = serde_json::Map::new();
    let mut image = None;
    let content_type = request.header("content-type").unwrap_or_default();
    if let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        for part in multipart_parts(&request.body, boundary.trim_matches('"')) {
            if part.name == "image" || part.name == "image[]" {
                image = Some(part.data);
            } else {
                let text = String::from_utf8_lossy(&part.data).into_owned();
                fields.insert(part.name, Value::String(text));
            }
        }
    } else if let Ok(Value::Object(map)) = serde_json::from_slice(&request.body) {
        fields = map;
    }
    SeenCall {
        path: request.path.clone(),
        authorization: request.header("authorization").map(str::to_string),
        fields,
        image,
    }
}

pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
}

/// Splits a `multipart/form-data` body into its named parts.
pub(crate) fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut at = match find(body, &delimiter, 0) {
        Some(i) => i + delimiter.len(),
        None => return parts,
    };
    while let Some(end) = find(body, &delimiter, at) {
        let chunk = &body[at..end];
        at = end + delimiter.len();
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = find(chunk, b"\r\n\r\n", 0) else {
            continue;
        };
        let headers = String::from_utf8_lossy(&chunk[..split]);
        let name = headers
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| {
                n.split("\r\n")
                    .next()
                    .unwrap_or(n)
                    .trim_matches('"')
                    .to_string()
            });
        if let Some(name) = name {
            parts.push(Part {
                name,
                data: chunk[split + 4..].to_vec(),
            });
        }
    }
    parts
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

pub(crate) async fn read_request(socket: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n", 0) {
            break i;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_split_into_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na red shoe\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"image.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\r\n--XyZ--\r\n";
        let parts = multipart_parts(body, "XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "prompt");
        assert_eq!(parts[0].data, b"a red shoe");
        assert_eq!(parts[1].name, "image");
        assert_eq!(parts[1].data, b"\x89PNG\r\n");
    }

    #[test]
    fn pictures_differ_per_serial() {
        assert_ne!(picture(32, 32, 1), picture(32, 32, 2));
        let img = image::load_from_memory(&picture(40, 20, 3)).expect("png");
        assert_eq!((img.width(), img.height()), (40, 20));
    }
}
