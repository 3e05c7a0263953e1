//! The caller's `traceparent` goes from the HTTP request through the gateway to the orchestrator, whose
//! log lines about the job carry the caller's trace id.

use std::sync::{Arc, Mutex, PoisonError};

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

on_both_databases!(the_callers_trace_id_reaches_the_orchestrators_logs);

async fn the_callers_trace_id_reaches_the_orchestrators_logs(backend: Backend) {
    let captured = Captured::default();
    // nextest runs each test in its own process, so this subscriber sees only this test's services.
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter("info")
        .with_writer(captured.clone())
        .try_init()
        .expect("the only subscriber of this process");
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
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
            .any(|l| l.contains(trace_id) && l.contains(&id)),
        "no log line carries both the trace id and the job id:\n{logs}"
    );
}
