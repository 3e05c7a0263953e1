//! pose_set: 12 shots, at most the provider's limit in flight, progress per shot, partial results kept.

use atelier_codes::ErrorCode;
use atelier_proto::v1::{self, process_event::Event};

use crate::helpers::{
    as_task, collect, completed, outputs, request, spawn_app_with_provider, url, TestApp,
};

fn pose_set(app: &TestApp, description: &str) -> v1::ProcessRequest {
    let params = v1::job_params::Params::PoseSet(v1::PoseSetParams {
        scene: v1::Scene::Street as i32,
        category: "shoes".into(),
        description: description.into(),
        model: String::new(),
    });
    as_task(
        request(params, url(app.sources.url("/image.jpg")), "unused"),
        "tenant-1",
        "task-1",
    )
}

fn shot_progress(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Progress(p) if p.stage == "shot" => Some(p.percent),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn twelve_shots_with_scene_and_category_prompts() {
    let app = spawn_app_with_provider().await;
    let (events, failure) = app.run(pose_set(&app, "white leather sneakers")).await;
    assert!(failure.is_none(), "{failure:?}");
    let outs = outputs(&events);
    assert_eq!(outs.len(), 12);
    let mut names: Vec<String> = outs.iter().map(|o| o.name.clone()).collect();
    names.sort();
    assert_eq!(names[0], "shot-01-front.png");
    assert_eq!(names[11], "shot-12-lifestyle.png");
    for out in &outs {
        assert!(app.storage.exists(&out.key).await.expect("exists"));
        let thumb = out.thumbnail.as_ref().expect("thumbnail");
        assert!(app.storage.exists(&thumb.key).await.expect("exists"));
    }
    let progress = shot_progress(&events);
    assert_eq!(progress.first(), Some(&0));
    assert_eq!(progress.last(), Some(&100));
    assert_eq!(progress.len(), 13, "a start and one per shot: {progress:?}");
    assert_eq!(completed(&events).failed_units, 0);

    let seen = app.provider().seen();
    assert_eq!(seen.len(), 12);
    let mut prompts: Vec<String> = seen.iter().filter_map(|c| c.field("prompt")).collect();
    for prompt in &prompts {
        assert!(prompt.contains("city street"), "{prompt}");
        assert!(prompt.contains("shoes"), "{prompt}");
        assert!(prompt.contains("white leather sneakers"), "{prompt}");
    }
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 12, "one prompt per pose");
    assert!(seen
        .iter()
        .all(|c| c.path == "/v1/images/edits" && c.image.is_some()));
}

#[tokio::test]
async fn the_provider_never_sees_more_than_three_calls_at_once() {
    let app = spawn_app_with_provider().await;
    let provider = app.provider();
    provider.hold();
    let run = tokio::spawn({
        let mut client = app.client.clone();
        let req = pose_set(&app, "");
        async move {
            let stream = client.process(req).await.expect("accepted");
            collect(stream.into_inner()).await
        }
    });
    // Let the shots through one at a time, each time only once the limit is reached again, so that
    // a processor ignoring the limit would pile more calls up at the gate.
    for remaining in (1..=12usize).rev() {
        provider.wait_in_flight(remaining.min(3)).await;
        assert!(
            provider.in_flight() <= 3,
            "{} in flight",
            provider.in_flight()
        );
        provider.release(1);
    }
    let (events, failure) = run.await.expect("task");
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(outputs(&events).len(), 12);
    assert_eq!(provider.calls(), 12);
    assert_eq!(provider.max_in_flight(), 3);
}

#[tokio::test]
async fn failed_shots_are_counted_and_the_others_kept_but_not_cached() {
    let app = spawn_app_with_provider().await;
    app.provider().fail_next(2, 500);
    let (events, failure) = app.run(pose_set(&app, "")).await;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(outputs(&events).len(), 10);
    let done = completed(&events);
    assert!(!done.from_cache);
    assert_eq!(done.failed_units, 2);
    let unit = done.unit_failure.expect("the first failure");
    assert_eq!(unit.code, ErrorCode::ModelCallFailed.number());
    assert_eq!(unit.reason, "MODEL_CALL_FAILED");
    assert_eq!(shot_progress(&events).last(), Some(&100));
    assert_eq!(
        app.metric(
            r#"atelier_processor_tasks_total{kind="pose_set",result="partially_succeeded"}"#
        )
        .await,
        1.0
    );

    // A partial result is not reused: the same task runs every shot again.
    let mut again = pose_set(&app, "");
    again.task_id = "task-2".into();
    again.output_prefix = "t/tenant-1/jobs/job-1/task-2/1".into();
    let (events, failure) = app.run(again).await;
    assert!(failure.is_none(), "{failure:?}");
    assert!(!completed(&events).from_cache);
    assert_eq!(outputs(&events).len(), 12);
    assert_eq!(app.provider().calls(), 24);
}

#[tokio::test]
async fn a_pose_set_whose_every_shot_is_refused_fails() {
    let app = spawn_app_with_provider().await;
    app.provider().refuse_prompts_containing("forbidden");
    let failure = app.run_err(pose_set(&app, "a forbidden print")).await;
    assert_eq!(failure.code, ErrorCode::ContentRejected);
    assert_eq!(app.provider().calls(), 12);
    assert!(app.local_files_under("t/tenant-1").is_empty());
}
