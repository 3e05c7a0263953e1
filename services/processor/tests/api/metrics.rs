//! The Prometheus endpoint on its own port, read over HTTP after real tasks.

use crate::helpers::{metric_value, spawn_app, spawn_app_with_provider, PROVIDER};

#[tokio::test]
async fn task_engine_and_cache_metrics_after_a_transform() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    assert!(
        before.contains("\natelier_processor_tasks_in_flight 0\n"),
        "{before}"
    );

    app.run_ok(app.transform_url("/image.jpg")).await;
    let text = app.metrics().await;
    for (series, value) in [
        (
            r#"atelier_processor_tasks_total{kind="transform",result="succeeded"}"#,
            1.0,
        ),
        (
            r#"atelier_processor_engine_runs_total{kind="transform"}"#,
            1.0,
        ),
        (
            r#"atelier_processor_cache_misses_total{kind="transform"}"#,
            1.0,
        ),
        (
            r#"atelier_processor_cache_hits_total{kind="transform"}"#,
            0.0,
        ),
        (
            r#"atelier_processor_task_duration_seconds_count{kind="transform"}"#,
            1.0,
        ),
        ("atelier_processor_tasks_in_flight", 0.0),
    ] {
        assert_eq!(metric_value(&text, series), value, "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE atelier_processor_tasks counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE atelier_processor_task_duration_seconds histogram"));

    let failure = app.run_err(app.transform_url("/not-an-image")).await;
    assert_eq!(failure.code, atelier_codes::ErrorCode::UnsupportedFormat);
    let text = app.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            r#"atelier_processor_tasks_total{kind="transform",result="failed"}"#
        ),
        1.0
    );

    let response = reqwest::get(format!("http://{}/nope", app.processor.metrics_addr()))
        .await
        .expect("answer");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn provider_calls_and_calls_in_flight() {
    let app = spawn_app_with_provider().await;
    let in_flight =
        format!(r#"atelier_processor_provider_calls_in_flight{{provider="{PROVIDER}"}}"#);
    assert_eq!(
        app.metric(&in_flight).await,
        0.0,
        "the gauge exists from the start"
    );

    app.provider().hold();
    let run = tokio::spawn({
        let mut client = app.client.clone();
        let req = app.edit_url("/image.jpg", "make it blue");
        async move {
            let stream = client.process(req).await.expect("accepted");
            crate::helpers::collect(stream.into_inner()).await
        }
    });
    app.provider().wait_in_flight(1).await;
    let during = app.metrics().await;
    assert_eq!(metric_value(&during, &in_flight), 1.0);
    assert_eq!(
        metric_value(&during, "atelier_processor_tasks_in_flight"),
        1.0
    );
    app.provider().release_all();
    let (_, failure) = run.await.expect("task");
    assert!(failure.is_none(), "{failure:?}");

    let after = app.metrics().await;
    assert_eq!(metric_value(&after, &in_flight), 0.0);
    assert_eq!(
        metric_value(
            &after,
            &format!(
                r#"atelier_processor_provider_calls_total{{provider="{PROVIDER}",result="ok"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &after,
            r#"atelier_processor_tasks_total{kind="edit",result="succeeded"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &after,
            r#"atelier_processor_engine_runs_total{kind="edit"}"#
        ),
        0.0
    );
}
