//! The caller's `traceparent` goes from the HTTP request through the gateway to the orchestrator, whose
//! log lines about the job carry the caller's trace id.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The process's one subscriber, capturing every log line in memory. Both database variants of the
/// test share it (cargo runs them in one process; nextest in one each), so each looks only for its
/// own trace id next to its own job id.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter("info")
            .with_writer(captured.clone())
            .try_init()
            .expect("the only subscriber of this process");
        captured
    })
}

on_both_databases!(the_callers_trace_id_reaches_the_orchestrators_logs);

async fn the_callers_trace_id_reaches_the_orchestrators_logs(backend: Backend) {
    let captured = captured();
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let response = app
        .call(reqwest::Method::POST, "/v1/jobs", &shop, "shopper")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"kind": "transform", "sources": [{"url": app.sources.url("/image.jpg")}]}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 200);
    let job: serde_json::Value = response.json().await.expect("job");
    let id = job["id"].as_str().expect("id").to_string();
    let done = app.finish(&shop, &id).await;
    assert_eq!(done["state"], "succeeded");
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(PoisonError::into_inner))
        .to_string();
    assert!(
        logs.lines()
            .any(|l| l.contains(&trace_id) && l.contains(&id)),
        "no log line carries both the trace id and the job id:\n{logs}"
    );
}
