//! A private PostgreSQL server for fault tests: its own data folder in a temporary directory and its
//! own port, stopped and started again at will. Never the shared server on 5432 other tests use.
//!
//! The binaries are found under `/usr/lib/postgresql/<version>/bin` (the newest), on `PATH`, or in
//! `ATELIER_PG_BIN`. `initdb` and `postgres` refuse to run as root: when the tests run as root
//! (CI, containers), every command runs as the `postgres` user through `runuser`, and the temporary
//! directory (under `/tmp`, which that user can reach) is handed to it first. Readiness is
//! `pg_ctl -w`: no sleeps.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// The user the server runs as when the tests run as root.
const SERVER_USER: &str = "postgres";
/// How long `pg_ctl` waits for the server to start or stop (seconds).
const PG_CTL_WAIT: &str = "60";

/// A PostgreSQL server of the test's own; stopped (immediately) and removed on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    root: tempfile::TempDir,
    port: u16,
    /// `Some("postgres")` when we are root and must drop privileges for the server.
    run_as: Option<&'static str>,
    running: std::sync::atomic::AtomicBool,
}

impl PrivatePostgres {
    /// Creates a cluster (trust authentication, user `postgres`) on a free port and starts it.
    pub async fn start() -> Self {
        let bin = find_bin().unwrap_or_else(|| {
            panic!("PostgreSQL binaries (initdb, pg_ctl) not found: install PostgreSQL or set ATELIER_PG_BIN")
        });
        let run_as = is_root().then_some(SERVER_USER);
        // Root's TMPDIR may be a folder the server user cannot enter; /tmp always can be.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("atelier-pg-")
            .tempdir_in(&base)
            .expect("create a temporary folder for PostgreSQL");
        if let Some(user) = run_as {
            let (uid, gid) = user_ids(user)
                .unwrap_or_else(|| panic!("running as root needs a {user} user to run PostgreSQL"));
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))
                .expect("hand the temporary folder to the server user");
        }
        let port = free_port();
        let server = Self {
            bin,
            root,
            port,
            run_as,
            running: std::sync::atomic::AtomicBool::new(false),
        };
        let data = server.data();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    path_str(&data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await;
        // Loopback only, its own socket folder (no clash with the system server's), and no fsync:
        // an immediate stop still loses nothing, as the data stays in the page cache.
        let settings = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 200\n",
            path_str(server.root.path())
        );
        append(&data.join("postgresql.conf"), &settings);
        server.restart().await;
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): every connection is dropped without
    /// goodbye, as in a crash; the next start recovers from the write-ahead log.
    pub async fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]).await;
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Starts the server (again) on the same port and data folder, and returns once it accepts
    /// connections; a running server is stopped first.
    pub async fn restart(&self) {
        if self.running.load(std::sync::atomic::Ordering::SeqCst) {
            self.stop().await;
        }
        let log = self.root.path().join("postgres.log");
        self.pg_ctl(&["start", "-l", path_str(&log)]).await;
        self.running
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    async fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let mut args = vec!["-D", path_str(&data), "-w", "-t", PG_CTL_WAIT];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args).await;
    }

    async fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program, args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default();
            panic!(
                "{program} {args:?} failed with {}:\n{}{}\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let binary = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        // The server user may not be able to enter the test's working folder.
        command.args(args).current_dir(self.root.path());
        command.kill_on_drop(true);
        command
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.running.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let data = self.data();
        let binary = self.bin.join("pg_ctl");
        let args = [
            "-D",
            path_str(&data),
            "-w",
            "-t",
            PG_CTL_WAIT,
            "stop",
            "-m",
            "immediate",
        ];
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&binary);
                c
            }
            None => std::process::Command::new(&binary),
        };
        // A server that is already gone is the goal.
        let _ = command
            .args(args)
            .current_dir(self.root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The folder holding `initdb` and `pg_ctl`: `ATELIER_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, or `PATH`.
fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("ATELIER_PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).find(|d| has_tools(d)))
}

/// Whether this process runs as root (the owner of `/proc/self` is our user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// A port that was free a moment ago: bind port 0, read the port, release it.
/// A free port below Linux's ephemeral range (32768..61000). A port from that range would be free
/// only until the next `bind(…:0)` or outgoing connection of a concurrent test took it, which can
/// happen while the server is down between a stop and a restart; below it, nothing picks ports at
/// random, so the port stays the server's across restarts.
fn free_port() -> u16 {
    const LOW: u16 = 20_000;
    const SPAN: u32 = 12_000;
    // Spread concurrent servers (one per test process) over the range.
    let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    for step in 0..SPAN {
        let offset = (seed.wrapping_add(step.wrapping_mul(7_919))) % SPAN;
        let port = LOW + offset as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", u32::from(LOW) + SPAN)
}
