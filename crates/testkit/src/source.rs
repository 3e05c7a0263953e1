//! A tiny real HTTP/1.1 source server on 127.0.0.1:0, written on a raw TcpListener so it can misbehave
//! exactly: stall mid-body, send chunked bodies without a length, redirect in chains.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use crate::images;

/// Over the 10 MiB cap.
const TOO_LARGE: usize = 10 * 1024 * 1024 + 1024;

/// What happened on the server, for tests to wait on.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A request for this path arrived.
    Request(String),
    /// The client closed a stalled connection.
    Closed(String),
}

/// The source server; stops when dropped.
pub struct SourceServer {
    addr: std::net::SocketAddr,
    seen: Mutex<mpsc::UnboundedReceiver<Seen>>,
    bodies: Arc<Bodies>,
    task: tokio::task::JoinHandle<()>,
}

/// Paths added with [`SourceServer::serve_file`]: content type and body.
type Files = std::collections::HashMap<String, (String, Arc<[u8]>)>;

struct Bodies {
    /// Requests seen per path, for routes that change their answer over time.
    counts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    jpeg: Vec<u8>,
    png_small: Vec<u8>,
    png_ok: Vec<u8>,
    png_wide: Vec<u8>,
    truncated: Vec<u8>,
    huge_header: Vec<u8>,
    /// Opens the `/held/` routes.
    held: tokio::sync::watch::Sender<bool>,
    /// Requests of `/held/` routes received so far.
    held_requests: std::sync::atomic::AtomicU32,
    /// Bodies added with [`SourceServer::serve_file`], by path: content type and bytes.
    files: std::sync::RwLock<Files>,
}

impl SourceServer {
    /// Starts serving on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind source server");
        let addr = listener.local_addr().expect("source addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let bodies = Arc::new(Bodies {
            counts: std::sync::Mutex::new(std::collections::HashMap::new()),
            jpeg: images::jpeg(),
            png_small: images::png(10, 10),
            png_ok: images::png(64, 48),
            png_wide: images::png(400, 100),
            truncated: images::truncated_jpeg(),
            huge_header: images::huge_png_header(),
            held: tokio::sync::watch::channel(false).0,
            held_requests: std::sync::atomic::AtomicU32::new(0),
            files: std::sync::RwLock::new(std::collections::HashMap::new()),
        });
        let serving = Arc::clone(&bodies);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving), tx.clone()));
            }
        });
        Self {
            addr,
            seen: Mutex::new(rx),
            bodies,
            task,
        }
    }

    /// How many requests of `/held/` routes arrived so far (each waits for [`Self::release_held`]).
    pub fn held_requests(&self) -> u32 {
        self.bodies
            .held_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every `/held/` request, waiting or still to come, have its JPEG.
    pub fn release_held(&self) {
        self.bodies.held.send_replace(true);
    }

    /// Serves `body` (as `content_type`) at `path`, e.g. `/files/photo.jpg`, from now on; paths
    /// added this way take precedence over the built-in routes.
    pub fn serve_file(&self, path: &str, content_type: &str, body: Vec<u8>) {
        let mut files = self
            .bodies
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        files.insert(
            path.to_string(),
            (content_type.to_string(), Arc::from(body)),
        );
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits until `event` happens (events before it are skipped); a test that waits longer than
    /// [`WAIT_LIMIT`] fails instead of hanging.
    pub async fn wait_for(&self, event: Seen) {
        self.wait_for_within(event, WAIT_LIMIT).await;
    }

    /// Waits until `event` happens, and fails the test if it has not within `limit`. Checks that
    /// something stopped *because of* a cancellation use a limit well under the processor's
    /// download timeout, which would close the connection anyway.
    pub async fn wait_for_within(&self, event: Seen, limit: Duration) {
        let wait = async {
            let mut seen = self.seen.lock().await;
            while let Some(next) = seen.recv().await {
                if next == event {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(true) => {}
            Ok(false) => panic!("source server stopped before {event:?}"),
            Err(_) => panic!("{event:?} did not happen within {limit:?}"),
        }
    }
}

/// How long [`SourceServer::wait_for`] waits before failing the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How soon a cancelled download must hang up on the source: well under the test processors'
/// download timeouts (5 s and more), so a cancellation that does not work cannot pass for one that does.
pub const CANCEL_LIMIT: Duration = Duration::from_secs(2);

impl Drop for SourceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, bodies: Arc<Bodies>, seen: mpsc::UnboundedSender<Seen>) {
    let Some(path) = read_request_path(&mut socket).await else {
        return;
    };
    let _ = seen.send(Seen::Request(path.clone()));
    let b = &*bodies;
    let file = b
        .files
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&path)
        .cloned();
    if let Some((content_type, body)) = file {
        let _ = ok(&mut socket, &content_type, &body).await;
        return;
    }
    let _ = match path.as_str() {
        "/image.jpg" => ok(&mut socket, "image/jpeg", &b.jpeg).await,
        "/small.png" => ok(&mut socket, "image/png", &b.png_small).await,
        "/small-ok.png" => ok(&mut socket, "image/png", &b.png_ok).await,
        // 4:1, outside what model kinds accept.
        "/wide.png" => ok(&mut socket, "image/png", &b.png_wide).await,
        "/truncated.jpg" => ok(&mut socket, "image/jpeg", &b.truncated).await,
        "/huge-header.png" => ok(&mut socket, "image/png", &b.huge_header).await,
        "/not-an-image" => {
            ok(
                &mut socket,
                "image/jpeg",
                b"these bytes are plain text, not pixels",
            )
            .await
        }
        // A 200 with an empty body: a file that is not an image.
        "/empty.jpg" => ok(&mut socket, "image/jpeg", &[]).await,
        "/too-large" => too_large(&mut socket, true).await,
        "/too-large-chunked" => too_large(&mut socket, false).await,
        "/error-500" => {
            head(
                &mut socket,
                "500 Internal Server Error",
                "text/plain",
                Some(0),
            )
            .await
        }
        "/stall" => {
            let _ = stall(&mut socket).await;
            let _ = seen.send(Seen::Closed(path));
            return;
        }
        p if p.starts_with("/redirect/") => redirect(&mut socket, &p["/redirect/".len()..]).await,
        // `/flaky/N/name`: the first N requests answer 500, later ones the JPEG.
        p if p.starts_with("/flaky/") => {
            let failures: u32 = p
                .split('/')
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if b.count(p) <= failures {
                head(
                    &mut socket,
                    "500 Internal Server Error",
                    "text/plain",
                    Some(0),
                )
                .await
            } else {
                ok(&mut socket, "image/jpeg", &b.jpeg).await
            }
        }
        // `/held/name`: holds the answer until the test releases it, then sends the JPEG.
        p if p.starts_with("/held/") => {
            let mut open = b.held.subscribe();
            b.held_requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if open.wait_for(|open| *open).await.is_err() {
                return;
            }
            ok(&mut socket, "image/jpeg", &b.jpeg).await
        }
        // `/stall-once/name`: the first request stalls until the client hangs up, later ones get the JPEG.
        p if p.starts_with("/stall-once/") => {
            if b.count(p) == 1 {
                let _ = stall(&mut socket).await;
                let _ = seen.send(Seen::Closed(path));
                return;
            }
            ok(&mut socket, "image/jpeg", &b.jpeg).await
        }
        _ => head(&mut socket, "404 Not Found", "text/plain", Some(0)).await,
    };
}

impl Bodies {
    /// Counts a request for `path` and returns how many there have been, this one included.
    fn count(&self, path: &str) -> u32 {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(path.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

async fn read_request_path(socket: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace().nth(1).map(str::to_string)
}

async fn head(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    length: Option<usize>,
) -> std::io::Result<()> {
    let length = match length {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_string(),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{length}connection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await
}

async fn ok(socket: &mut TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    head(socket, "200 OK", content_type, Some(body.len())).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}

/// A JPEG start followed by zeros past the cap; with or without an honest Content-Length.
async fn too_large(socket: &mut TcpStream, with_length: bool) -> std::io::Result<()> {
    head(
        socket,
        "200 OK",
        "image/jpeg",
        with_length.then_some(TOO_LARGE),
    )
    .await?;
    let block = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < TOO_LARGE {
        let n = block.len().min(TOO_LARGE - sent);
        if with_length {
            socket.write_all(&block[..n]).await?;
        } else {
            socket.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            socket.write_all(&block[..n]).await?;
            socket.write_all(b"\r\n").await?;
        }
        sent += n;
    }
    if !with_length {
        socket.write_all(b"0\r\n\r\n").await?;
    }
    socket.shutdown().await
}

/// Headers and a few bytes of a promised 1000, then nothing until the client hangs up.
async fn stall(socket: &mut TcpStream) -> std::io::Result<()> {
    head(socket, "200 OK", "image/jpeg", Some(1000)).await?;
    socket.write_all(&[0xFF, 0xD8, 0xFF, 0xE0]).await?;
    socket.flush().await?;
    let mut sink = [0u8; 256];
    while socket.read(&mut sink).await? > 0 {}
    Ok(())
}

/// `/redirect/N` sends to `/redirect/N-1`, and `/redirect/0` to the JPEG; `/redirect/to-10.0.0.1`
/// and `/redirect/to-metadata` point at blocked addresses.
async fn redirect(socket: &mut TcpStream, rest: &str) -> std::io::Result<()> {
    let location = match rest {
        "to-10.0.0.1" => "http://10.0.0.1/image.jpg".to_string(),
        "to-metadata" => "http://169.254.169.254/latest/meta-data/".to_string(),
        "0" => "/image.jpg".to_string(),
        n => match n.parse::<u32>() {
            Ok(n) => format!("/redirect/{}", n - 1),
            Err(_) => "/missing".to_string(),
        },
    };
    let head = format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.shutdown().await
}
