//! Trace context: the caller's `traceparent` becomes the `trace_id` of every log line of the attempt.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tonic::Request;

use crate::helpers::spawn_app;

/// Log lines of this test binary, as JSON, captured by a global subscriber installed once.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines_with(needle: &str) -> Vec<String> {
    let logs = captured()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_callers_trace_id_is_on_the_attempts_log_lines() {
    captured();
    let app = spawn_app().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = Request::new(app.transform_url("/image.jpg"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let stream = app.client.clone().process(req).await.expect("accepted");
    let (_, failure) = crate::helpers::collect(stream.into_inner()).await;
    assert!(failure.is_none(), "{failure:?}");

    let traced = lines_with(&format!(r#""trace_id":"{trace_id}""#));
    for message in ["source fetched", "task completed"] {
        assert!(
            traced.iter().any(|l| l.contains(message)),
            "no `{message}` line with the trace id in {traced:#?}"
        );
    }

    // A malformed traceparent starts a new trace rather than failing or reusing the bad value.
    let mut req = Request::new(app.transform_url("/image.jpg"));
    req.metadata_mut()
        .insert("traceparent", "00-nonsense".parse().expect("ascii"));
    let mut req_task = req;
    req_task.get_mut().task_id = "task-malformed".into();
    let stream = app
        .client
        .clone()
        .process(req_task)
        .await
        .expect("accepted");
    let (_, failure) = crate::helpers::collect(stream.into_inner()).await;
    assert!(failure.is_none(), "{failure:?}");
    let lines = lines_with(r#""task_id":"task-malformed""#);
    let done = lines
        .iter()
        .find(|l| l.contains("task completed"))
        .expect("a completion line");
    let start = done.find(r#""trace_id":""#).expect("a trace id") + 12;
    let fresh = &done[start..start + 32];
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    assert_ne!(fresh, trace_id);
}
