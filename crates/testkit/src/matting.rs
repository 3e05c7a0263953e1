//! Fake remote matting services on 127.0.0.1:0: remove.bg's API (`POST /v1.0/removebg`, multipart
//! `image_file`, `size`, `format`, key in `X-Api-Key`) and a self-hosted rembg server
//! (`POST /api/remove`, multipart `file` and `model`).
//!
//! Each checks the request as the real service would (method, path, key, the file part), records it,
//! decodes the photo it was sent and answers a real RGBA PNG cut-out of it whose alpha is a known
//! shape: opaque inside the centre rectangle `[w/4, 3w/4) × [h/4, 3h/4)`, transparent outside (see
//! [`inside_known_shape`]). remove.bg's `size=preview` answers at most 0.25 megapixels, as the real
//! one does. Tests steer it: the service's error answers (402, 403, 429 with `Retry-After`, 400
//! `unknown_foreground`, 5xx) for the next calls, canned bytes instead of a cut-out, and a gate that
//! holds calls so concurrency is observed without sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use image::{ImageFormat, Rgba, RgbaImage};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::provider::{hung_up, multipart_parts, read_request, reason, HttpRequest};

/// The API key the fake remove.bg expects in `X-Api-Key`.
pub const REMOVE_BG_KEY: &str = "rb-atelier-test-key";

/// The models the fake rembg server knows (a real one knows these and more).
pub const REMBG_MODELS: [&str; 3] = ["u2net", "isnet-general-use", "birefnet-general"];

/// The largest answer for remove.bg's `preview` size, in pixels.
pub const PREVIEW_PIXELS: u32 = 250_000;

/// Which service the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// remove.bg's API.
    RemoveBg,
    /// A rembg server (`rembg s`).
    Rembg,
}

/// Whether pixel (x, y) of a `w`×`h` photo is opaque in the answers' cut-out.
pub fn inside_known_shape(x: u32, y: u32, w: u32, h: u32) -> bool {
    (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y)
}

/// One call the service received.
#[derive(Clone, Debug)]
pub struct SeenCut {
    /// `POST` for a real client.
    pub method: String,
    /// `/v1.0/removebg` or `/api/remove`.
    pub path: String,
    /// The `X-Api-Key` header.
    pub api_key: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Every multipart text field.
    pub fields: BTreeMap<String, String>,
    /// The name of every part, in order (text and file).
    pub parts: Vec<String>,
    /// Bytes of the file part (`image_file` or `file`).
    pub image: Option<Vec<u8>>,
}

/// A failure to answer instead of a cut-out.
#[derive(Clone, Copy, Debug)]
struct Failure {
    status: u16,
    retry_after: Option<u64>,
}

struct State {
    protocol: Protocol,
    calls: AtomicU32,
    in_flight: watch::Sender<usize>,
    abandoned: watch::Sender<usize>,
    max_in_flight: AtomicUsize,
    failures: Mutex<VecDeque<Failure>>,
    canned: Mutex<Option<Vec<u8>>>,
    gate: Mutex<Option<Arc<Semaphore>>>,
    seen: Mutex<Vec<SeenCut>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fake service; stops when dropped.
pub struct MattingServer {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl MattingServer {
    /// A fake remove.bg on a free port.
    pub async fn remove_bg() -> Self {
        Self::start(Protocol::RemoveBg).await
    }

    /// A fake rembg server on a free port.
    pub async fn rembg() -> Self {
        Self::start(Protocol::Rembg).await
    }

    async fn start(protocol: Protocol) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind matting server");
        let addr = listener.local_addr().expect("matting server addr");
        let state = Arc::new(State {
            protocol,
            calls: AtomicU32::new(0),
            in_flight: watch::channel(0).0,
            abandoned: watch::channel(0).0,
            max_in_flight: AtomicUsize::new(0),
            failures: Mutex::new(VecDeque::new()),
            canned: Mutex::new(None),
            gate: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving)));
            }
        });
        Self { addr, state, task }
    }

    /// The base URL to configure: the server's root, `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls received so far on the service's route (failed ones included).
    pub fn calls(&self) -> u32 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Every call received on the service's route, in arrival order.
    pub fn seen(&self) -> Vec<SeenCut> {
        lock(&self.state.seen).clone()
    }

    /// The next `n` calls answer HTTP `status` with the service's error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_retry_after(n, status, None);
    }

    /// Like [`MattingServer::fail_next`], with a `Retry-After` header of `seconds`.
    pub fn fail_next_retry_after(&self, n: usize, status: u16, seconds: Option<u64>) {
        let failure = Failure {
            status,
            retry_after: seconds,
        };
        lock(&self.state.failures).extend(std::iter::repeat_n(failure, n));
    }

    /// Answer with these bytes (HTTP 200, `image/png`) instead of a cut-out; `None` goes back.
    pub fn answer_with_bytes(&self, bytes: Option<Vec<u8>>) {
        *lock(&self.state.canned) = bytes;
    }

    /// The most calls ever in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Calls in progress now.
    pub fn in_flight(&self) -> usize {
        *self.state.in_flight.borrow()
    }

    /// Waits until at least `n` calls are in progress at once.
    pub async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.state.in_flight.subscribe();
        rx.wait_for(|now| *now >= n)
            .await
            .expect("matting server stopped");
    }

    /// Waits until at least `n` clients hung up on a held call before its answer.
    pub async fn wait_abandoned(&self, n: usize) {
        let mut rx = self.state.abandoned.subscribe();
        rx.wait_for(|now| *now >= n)
            .await
            .expect("matting server stopped");
    }

    /// From now on each call waits at a gate until [`MattingServer::release`] lets it through.
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
}

impl Drop for MattingServer {
    fn drop(&mut self) {
        self.task.abort();
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

/// An answer: status, content type, extra headers, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }
}

async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let route = match state.protocol {
        Protocol::RemoveBg => "/v1.0/removebg",
        Protocol::Rembg => "/api/remove",
    };
    if request.path != route {
        let answer = Answer::json(404, json!({"detail": "Not Found"}));
        let _ = write_answer(&mut socket, &answer).await;
        let _ = socket.write_all(&answer.body).await;
        let _ = socket.shutdown().await;
        return;
    }
    state.calls.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state);
    // Decoding and encoding images is slow in a debug build: off the async threads, so that other
    // calls arrive (and are counted) meanwhile.
    let answer = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || answer(&state, &request))
            .await
            .expect("answer the call")
    };
    // A held call has its head sent at once and its body only when released.
    if write_answer(&mut socket, &answer).await.is_err() {
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
    let _ = socket.write_all(&answer.body).await;
    let _ = socket.shutdown().await;
}

async fn write_answer(socket: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await
}

fn seen_call(request: &HttpRequest) -> SeenCut {
    let mut fields = BTreeMap::new();
    let mut parts = Vec::new();
    let mut image = None;
    let content_type = request.header("content-type").unwrap_or_default();
    if let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        for part in multipart_parts(&request.body, boundary.trim_matches('"')) {
            parts.push(part.name.clone());
            if matches!(part.name.as_str(), "image_file" | "file") {
                image = Some(part.data);
            } else {
                fields.insert(part.name, String::from_utf8_lossy(&part.data).into_owned());
            }
        }
    }
    SeenCut {
        method: request.method.clone(),
        path: request.path.clone(),
        api_key: request.header("x-api-key").map(str::to_string),
        authorization: request.header("authorization").map(str::to_string),
        fields,
        parts,
        image,
    }
}

fn answer(state: &State, request: &HttpRequest) -> Answer {
    let call = seen_call(request);
    lock(&state.seen).push(call.clone());
    match state.protocol {
        Protocol::RemoveBg => remove_bg(state, &call),
        Protocol::Rembg => rembg(state, &call),
    }
}

/// remove.bg's error body.
fn remove_bg_error(status: u16, title: &str, code: &str) -> Answer {
    Answer::json(status, json!({"errors": [{"title": title, "code": code}]}))
}

fn remove_bg(state: &State, call: &SeenCut) -> Answer {
    if call.method != "POST" {
        return remove_bg_error(405, "Method not allowed", "method_not_allowed");
    }
    if call.api_key.as_deref() != Some(REMOVE_BG_KEY) {
        return remove_bg_error(403, "Forbidden: API key invalid", "auth_failed");
    }
    if let Some(failure) = lock(&state.failures).pop_front() {
        let mut answer = match failure.status {
            400 => remove_bg_error(
                400,
                "Could not identify foreground in image. For details and recommendations see \
                 https://www.remove.bg/supported-images.",
                "unknown_foreground",
            ),
            402 => remove_bg_error(402, "Insufficient credits", "insufficient_credits"),
            403 => remove_bg_error(403, "Forbidden: API key invalid", "auth_failed"),
            429 => remove_bg_error(429, "Rate limit exceeded", "rate_limit_exceeded"),
            status => remove_bg_error(status, "Internal server error", "server_error"),
        };
        if let Some(seconds) = failure.retry_after {
            answer.headers.push(("retry-after", seconds.to_string()));
        }
        return answer;
    }
    let Some(image) = call.image.as_deref() else {
        return remove_bg_error(400, "No image given", "missing_source");
    };
    let size = call.fields.get("size").map_or("auto", String::as_str);
    let known = [
        "auto", "preview", "small", "regular", "medium", "hd", "full", "4k",
    ];
    if !known.contains(&size) || call.fields.get("format").map(String::as_str) != Some("png") {
        return remove_bg_error(400, "Invalid parameters", "invalid_parameters");
    }
    let most = matches!(size, "preview" | "small" | "regular").then_some(PREVIEW_PIXELS);
    cut_out(state, image, most)
}

fn rembg(state: &State, call: &SeenCut) -> Answer {
    if call.method != "POST" {
        return Answer::json(405, json!({"detail": "Method Not Allowed"}));
    }
    if let Some(failure) = lock(&state.failures).pop_front() {
        return Answer {
            status: failure.status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: b"Internal Server Error".to_vec(),
        };
    }
    let model = call.fields.get("model").map_or("u2net", String::as_str);
    if !REMBG_MODELS.contains(&model) {
        return Answer::json(
            422,
            json!({"detail": [{"loc": ["body", "model"], "msg": "string does not match regex", "type": "value_error.str.regex"}]}),
        );
    }
    let Some(image) = call.image.as_deref() else {
        return Answer::json(
            422,
            json!({"detail": [{"loc": ["body", "file"], "msg": "field required", "type": "value_error.missing"}]}),
        );
    };
    cut_out(state, image, None)
}

/// The photo's cut-out in the known shape, at most `most_pixels` large.
fn cut_out(state: &State, image: &[u8], most_pixels: Option<u32>) -> Answer {
    if let Some(canned) = lock(&state.canned).clone() {
        return Answer {
            status: 200,
            content_type: "image/png",
            headers: Vec::new(),
            body: canned,
        };
    }
    let Ok(photo) = image::load_from_memory(image) else {
        return match state.protocol {
            Protocol::RemoveBg => remove_bg_error(400, "Invalid image", "invalid_file"),
            Protocol::Rembg => Answer {
                status: 500,
                content_type: "text/plain; charset=utf-8",
                headers: Vec::new(),
                body: b"Internal Server Error".to_vec(),
            },
        };
    };
    let rgb = photo.to_rgb8();
    let (w, h) = rgb.dimensions();
    let mut cut = RgbaImage::from_fn(w, h, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        let alpha = if inside_known_shape(x, y, w, h) {
            255
        } else {
            0
        };
        Rgba([r, g, b, alpha])
    });
    if let Some(most) = most_pixels.filter(|&most| w * h > most) {
        let scale = (f64::from(most) / f64::from(w * h)).sqrt();
        let (sw, sh) = (
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        );
        cut = image::imageops::resize(&cut, sw, sh, image::imageops::FilterType::Triangle);
    }
    let (cw, ch) = cut.dimensions();
    let mut out = Cursor::new(Vec::new());
    cut.write_to(&mut out, ImageFormat::Png)
        .expect("encode cut-out");
    let mut headers = Vec::new();
    if state.protocol == Protocol::RemoveBg {
        headers.push(("x-credits-charged", "1".to_string()));
        headers.push(("x-width", cw.to_string()));
        headers.push(("x-height", ch.to_string()));
    }
    Answer {
        status: 200,
        content_type: "image/png",
        headers,
        body: out.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_shape_is_the_centre_rectangle() {
        assert!(inside_known_shape(50, 50, 100, 100));
        assert!(inside_known_shape(25, 25, 100, 100));
        assert!(!inside_known_shape(24, 50, 100, 100));
        assert!(!inside_known_shape(50, 75, 100, 100));
    }
}
