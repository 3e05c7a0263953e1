//! Test support: a real S3-compatible server (`s3s-fs`) on 127.0.0.1, never a mock of the SDK.
//!
//! Install the server with `scripts/install-test-deps.sh`; tests using it fail (never skip) when
//! it is missing.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{S3Options, Storage};

const BINARY: &str = "s3s-fs";
/// Readiness polls before giving up: 200 × 50 ms, ten seconds.
const READY_ATTEMPTS: u32 = 200;
const READY_INTERVAL: Duration = Duration::from_millis(50);

/// A running `s3s-fs` server with a temporary root folder holding one bucket; stopped on drop. A
/// test may [`stop`](Self::stop) it and [`restart`](Self::restart) it on the same port and folder,
/// to play an outage of the store.
pub struct S3Server {
    /// Base URL, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
    /// Access key the server accepts.
    pub access_key: String,
    /// Secret key the server accepts.
    pub secret_key: String,
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server on a free port and returns once its bucket answers requests.
    pub async fn start() -> S3Server {
        let binary = find_binary().unwrap_or_else(|| {
            panic!(
                "{BINARY} not found on PATH or in ~/.cargo/bin: run scripts/install-test-deps.sh"
            )
        });
        let root = tempfile::tempdir().expect("create temporary root for s3s-fs");
        // s3s-fs maps each bucket to a sub-folder of its data root; the log stays outside it.
        let bucket = "atelier-test".to_owned();
        std::fs::create_dir_all(root.path().join("data").join(&bucket))
            .expect("create bucket folder");
        let port = free_port();
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            access_key: "atelier-test-access".to_owned(),
            secret_key: "atelier-test-secret".to_owned(),
            child: None,
            binary,
            port,
            root,
        };
        server.restart().await;
        server
    }

    /// Kills the server: its port refuses connections until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean the process is already gone, which is the goal.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and folder, so every object stored before is
    /// there; returns once its bucket answers. A running server is stopped first.
    pub async fn restart(&mut self) {
        self.stop();
        let log_path = self.root.path().join("s3s-fs.log");
        // Appended to, so the log of an earlier run is kept.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open s3s-fs log file");
        let log_err = log.try_clone().expect("clone s3s-fs log file handle");
        let child = Command::new(&self.binary)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--access-key")
            .arg(&self.access_key)
            .arg("--secret-key")
            .arg(&self.secret_key)
            .arg(self.root.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.binary.display()));
        self.child = Some(child);
        self.wait_until_ready(self.port, &log_path).await;
    }

    /// Options reaching this server: its endpoint, path-style addressing and its credentials.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            path_style: true,
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            public_base_url: None,
        }
    }

    /// Storage location of the bucket, `s3://<bucket>`.
    pub fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn wait_until_ready(&mut self, port: u16, log_path: &std::path::Path) {
        let storage = Storage::open(&self.location(), &self.options())
            .await
            .expect("open storage on s3s-fs");
        let mut last_error = String::from("never reached");
        for _ in 0..READY_ATTEMPTS {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().expect("poll s3s-fs process"),
                None => panic!("s3s-fs is not running"),
            };
            if let Some(status) = exited {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("s3s-fs exited early with {status}:\n{log}");
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                match storage.check().await {
                    Ok(()) => return,
                    Err(err) => last_error = err.to_string(),
                }
            }
            tokio::time::sleep(READY_INTERVAL).await;
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        panic!("s3s-fs did not become ready on port {port}: {last_error}\n{log}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        tracing::debug!(root = %self.root.path().display(), "stopped s3s-fs");
    }
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(BINARY))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = || {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
        Some(cargo_home.join("bin").join(BINARY)).filter(|candidate| candidate.is_file())
    };
    on_path.or_else(in_cargo_home)
}

/// A port that was free a moment ago: bind port 0, read the port, release it.
fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("read bound address").port()
}
