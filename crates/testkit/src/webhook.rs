//! A real webhook receiver on 127.0.0.1:0, written on a raw TcpListener like the source server: it
//! records every request (path, `Atelier-Event-Id`, `Atelier-Signature`, body) and answers 200, or
//! 500 for the next N requests to a path, on purpose. [`verify`] checks a signature the way the README tells
//! receivers to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Largest request accepted (a terminal event carries the whole job).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request path, e.g. `/hooks`.
    pub path: String,
    /// The `Atelier-Event-Id` header.
    pub event_id: String,
    /// The `Atelier-Signature` header, `t=<unix>,v1=<hex>`.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as JSON (null when it is not JSON).
    pub json: serde_json::Value,
    /// What the receiver answered.
    pub status: u16,
}

impl Delivery {
    /// Whether the signature is valid for `secret` and recent.
    pub fn signed_with(&self, secret: &str) -> bool {
        verify(secret, &self.signature, &self.body)
    }
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<Delivery>>,
    changed: Notify,
    /// Failures still to answer, per path.
    fail_next: Mutex<HashMap<String, u32>>,
}

/// The receiver; stops when dropped.
pub struct WebhookReceiver {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts listening on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let state = Arc::new(State::default());
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving)));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers 500 to the next `n` requests for `path`.
    pub fn fail_next(&self, path: &str, n: u32) {
        lock(&self.state.fail_next).insert(path.to_string(), n);
    }

    /// Every request so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.state.log).clone()
    }

    /// Waits until the requests satisfy `done`, for at most `timeout`; fails the test after that,
    /// naming `what` and showing what arrived.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let log = self.deliveries();
            if done(&log) {
                return log;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the webhook receiver never saw {what} within {timeout:?}; got {log:#?}");
            }
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let Some((path, headers, body)) = read_request(&mut socket).await else {
        return;
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let fail = match lock(&state.fail_next).get_mut(&path) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    let status = if fail { 500 } else { 200 };
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
    lock(&state.log).push(Delivery {
        path,
        event_id: header("atelier-event-id"),
        signature: header("atelier-signature"),
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        body,
        status,
    });
    state.changed.notify_waiters();
}

type Request = (String, Vec<(String, String)>, Vec<u8>);

/// Reads one request with a `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return None;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some((path, headers, body))
}

/// Checks `t=<unix seconds>,v1=<hex>`: HMAC-SHA256 of `"<t>.<body>"` with `secret`, `t` within five
/// minutes of now.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if (now - t).abs() > 300 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}
