//! The content cache: a second identical task runs neither the engine nor a provider, tenants do not
//! share entries, identical tasks in flight at once run once, and a broken entry is only a miss.

use atelier_processor::process::WAITING_STAGE;
use atelier_proto::v1::{self, process_event::Event};

use atelier_storage::testing::S3Server;

use crate::helpers::{
    as_task, completed, outputs, request, spawn_app, spawn_app_on_s3, spawn_app_with,
    spawn_app_with_provider, transform, url, TestApp,
};

const ENGINE_RUNS: &str = r#"atelier_processor_engine_runs_total{kind="transform"}"#;
const HITS: &str = r#"atelier_processor_cache_hits_total{kind="transform"}"#;

fn rotate(app: &TestApp, tenant: &str, task: &str) -> v1::ProcessRequest {
    let params = v1::TransformParams {
        rotate: 90,
        ..Default::default()
    };
    as_task(
        request(
            transform(params),
            url(app.sources.url("/image.jpg")),
            "unused",
        ),
        tenant,
        task,
    )
}

async fn run_events(app: &TestApp, req: v1::ProcessRequest) -> Vec<Event> {
    let (events, failure) = app.run(req).await;
    assert!(failure.is_none(), "task failed: {failure:?}");
    events
}

#[tokio::test]
async fn a_second_identical_transform_reuses_the_stored_outputs() {
    let app = spawn_app().await;
    let first = run_events(&app, rotate(&app, "tenant-1", "task-1")).await;
    assert!(!completed(&first).from_cache);
    assert_eq!(app.metric(ENGINE_RUNS).await, 1.0);

    let second = run_events(&app, rotate(&app, "tenant-1", "task-2")).await;
    assert!(matches!(second[0], Event::Accepted(_)));
    assert!(matches!(second[1], Event::SourceFetched(_)));
    assert!(
        !second.iter().any(|e| matches!(e, Event::Progress(_))),
        "no engine progress on a hit: {second:?}"
    );
    let done = completed(&second);
    assert!(done.from_cache);
    assert_eq!(done.failed_units, 0);
    let (before, after) = (outputs(&first), outputs(&second));
    assert_eq!(after.len(), 1);
    assert!(after[0].from_cache);
    // The stored objects of the first task, as they were reported.
    assert_eq!(after[0].key, before[0].key);
    assert_eq!(after[0].sha256, before[0].sha256);
    assert_eq!(after[0].thumbnail, before[0].thumbnail);
    assert!(app.storage.exists(&after[0].key).await.expect("exists"));

    assert_eq!(app.metric(ENGINE_RUNS).await, 1.0, "the engine ran again");
    assert_eq!(app.metric(HITS).await, 1.0);
    assert_eq!(
        app.local_files_under("t/tenant-1/cache").len(),
        1,
        "one manifest"
    );

    // Other parameters are another entry.
    let mut other = rotate(&app, "tenant-1", "task-3");
    if let Some(v1::JobParams {
        params: Some(v1::job_params::Params::Transform(t)),
    }) = other.params.as_mut()
    {
        t.rotate = 180;
    }
    assert!(!completed(&run_events(&app, other).await).from_cache);
    assert_eq!(app.metric(ENGINE_RUNS).await, 2.0);
}

#[tokio::test]
async fn tenants_do_not_share_entries() {
    let app = spawn_app().await;
    run_events(&app, rotate(&app, "tenant-1", "task-1")).await;
    let other = run_events(&app, rotate(&app, "tenant-2", "task-1")).await;
    assert!(!completed(&other).from_cache);
    assert!(outputs(&other)
        .iter()
        .all(|o| !o.from_cache && o.key.starts_with("t/tenant-2/")));
    assert_eq!(app.metric(ENGINE_RUNS).await, 2.0);
    assert_eq!(app.local_files_under("t/tenant-2/cache").len(), 1);
}

#[tokio::test]
async fn a_corrupt_entry_or_a_missing_object_is_a_miss() {
    let app = spawn_app().await;
    let first = run_events(&app, rotate(&app, "tenant-1", "task-1")).await;
    let manifests = app.local_files_under("t/tenant-1/cache");
    assert_eq!(manifests.len(), 1);
    std::fs::write(&manifests[0], b"\xff\xfe not a manifest").expect("corrupt it");

    let again = run_events(&app, rotate(&app, "tenant-1", "task-2")).await;
    assert!(!completed(&again).from_cache);
    assert_eq!(app.metric(ENGINE_RUNS).await, 2.0);

    // The entry was rewritten by that run; now remove an object it names.
    let stored = outputs(&again);
    app.storage.delete(&stored[0].key).await.expect("delete");
    let third = run_events(&app, rotate(&app, "tenant-1", "task-3")).await;
    assert!(!completed(&third).from_cache);
    assert_eq!(app.metric(ENGINE_RUNS).await, 3.0);

    // And the rewritten entry serves the next one.
    let fourth = run_events(&app, rotate(&app, "tenant-1", "task-4")).await;
    assert!(completed(&fourth).from_cache);
    assert_eq!(outputs(&fourth)[0].key, outputs(&third)[0].key);
    assert_ne!(outputs(&first)[0].key, outputs(&third)[0].key);
}

#[tokio::test]
async fn two_identical_transforms_at_once_run_the_engine_once() {
    let app = spawn_app().await;
    let (a, b) = tokio::join!(
        app.run(rotate(&app, "tenant-1", "task-1")),
        app.run(rotate(&app, "tenant-1", "task-2")),
    );
    assert!(a.1.is_none() && b.1.is_none(), "{:?} {:?}", a.1, b.1);
    let cached = [completed(&a.0), completed(&b.0)]
        .iter()
        .filter(|c| c.from_cache)
        .count();
    assert_eq!(cached, 1, "exactly one of the two is served from the cache");
    assert_eq!(app.metric(ENGINE_RUNS).await, 1.0);
}

#[tokio::test]
async fn a_second_identical_edit_calls_no_provider() {
    let app = spawn_app_with_provider().await;
    let first = as_task(
        app.edit_url("/image.jpg", "make it  blue"),
        "tenant-1",
        "task-1",
    );
    let first = run_events(&app, first).await;
    assert_eq!(app.provider().calls(), 1);
    // Only spacing differs: the same prompt.
    let second = as_task(
        app.edit_url("/image.jpg", " make it\nblue"),
        "tenant-1",
        "task-2",
    );
    let second = run_events(&app, second).await;
    assert!(completed(&second).from_cache);
    assert_eq!(outputs(&second)[0].key, outputs(&first)[0].key);
    assert_eq!(app.provider().calls(), 1, "the provider was called again");
    assert_eq!(
        app.metric(r#"atelier_processor_provider_calls_total{provider="fake",result="ok"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn generate_is_reused_only_with_a_fixed_seed() {
    let app = spawn_app_with_provider().await;
    let generate = |seed: Option<i64>, task: &str| {
        let params = v1::job_params::Params::Generate(v1::GenerateParams {
            prompt: "a red shoe on a white table".into(),
            seed,
            ..Default::default()
        });
        let mut req = as_task(
            request(params, url(String::new()), "unused"),
            "tenant-1",
            task,
        );
        req.source = None;
        req
    };
    for task in ["a", "b"] {
        assert!(!completed(&run_events(&app, generate(None, task)).await).from_cache);
    }
    assert_eq!(app.provider().calls(), 2);
    assert!(!completed(&run_events(&app, generate(Some(42), "c")).await).from_cache);
    assert!(completed(&run_events(&app, generate(Some(42), "d")).await).from_cache);
    assert_eq!(app.provider().calls(), 3);
}

/// Starts `req`, returning its stream once the follower says it is waiting.
async fn start_until(
    app: &TestApp,
    req: v1::ProcessRequest,
    stage: &str,
) -> (Vec<Event>, tonic::Streaming<v1::ProcessEvent>) {
    let mut client = app.client.clone();
    let mut stream = client.process(req).await.expect("accepted").into_inner();
    let mut seen = Vec::new();
    loop {
        let event = stream
            .message()
            .await
            .expect("stream")
            .and_then(|e| e.event)
            .expect("an event before the end");
        let found = matches!(&event, Event::Progress(p) if p.stage == stage);
        seen.push(event);
        if found {
            return (seen, stream);
        }
    }
}

#[tokio::test]
async fn two_identical_edits_at_once_call_the_provider_once() {
    let app = spawn_app_with_provider().await;
    let provider = app.provider();
    provider.hold();
    let leader_req = as_task(
        app.edit_url("/image.jpg", "make it blue"),
        "tenant-1",
        "task-1",
    );
    let leader = tokio::spawn({
        let mut client = app.client.clone();
        async move {
            let stream = client.process(leader_req).await.expect("accepted");
            crate::helpers::collect(stream.into_inner()).await
        }
    });
    provider.wait_in_flight(1).await;

    let follower_req = as_task(
        app.edit_url("/image.jpg", "make it blue"),
        "tenant-1",
        "task-2",
    );
    let (mut follower, rest) = start_until(&app, follower_req, WAITING_STAGE).await;
    assert_eq!(provider.calls(), 1);
    provider.release_all();

    let (leader_events, leader_failure) = leader.await.expect("leader task");
    assert!(leader_failure.is_none(), "{leader_failure:?}");
    let (more, follower_failure) = crate::helpers::collect(rest).await;
    assert!(follower_failure.is_none(), "{follower_failure:?}");
    follower.extend(more);

    assert!(!completed(&leader_events).from_cache);
    assert!(completed(&follower).from_cache);
    assert_eq!(outputs(&follower)[0].key, outputs(&leader_events)[0].key);
    assert_eq!(provider.calls(), 1, "the follower called the provider");
    assert_eq!(provider.max_in_flight(), 1);
}

#[tokio::test]
async fn when_the_leader_fails_a_waiting_task_runs_itself() {
    let app = spawn_app_with_provider().await;
    let provider = app.provider();
    provider.hold();
    provider.fail_next(1, 500);
    let leader_req = as_task(
        app.edit_url("/image.jpg", "make it red"),
        "tenant-1",
        "task-1",
    );
    let leader = tokio::spawn({
        let mut client = app.client.clone();
        async move {
            let stream = client.process(leader_req).await.expect("accepted");
            crate::helpers::collect(stream.into_inner()).await
        }
    });
    provider.wait_in_flight(1).await;
    let follower_req = as_task(
        app.edit_url("/image.jpg", "make it red"),
        "tenant-1",
        "task-2",
    );
    let (mut follower, rest) = start_until(&app, follower_req, WAITING_STAGE).await;
    provider.release_all();

    let (_, leader_failure) = leader.await.expect("leader task");
    let failure = atelier_codes::decode(&leader_failure.expect("the leader fails"));
    assert_eq!(failure.code, atelier_codes::ErrorCode::ModelCallFailed);
    assert!(failure.transient);

    let (more, follower_failure) = crate::helpers::collect(rest).await;
    assert!(follower_failure.is_none(), "{follower_failure:?}");
    follower.extend(more);
    assert!(!completed(&follower).from_cache);
    assert_eq!(outputs(&follower).len(), 1);
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn processors_sharing_an_s3_bucket_share_the_cache() {
    let s3 = S3Server::start().await;
    let first = spawn_app_on_s3(s3.location(), s3.options()).await;
    let second = spawn_app_on_s3(s3.location(), s3.options()).await;

    let ran = run_events(&first, rotate(&first, "tenant-1", "task-1")).await;
    assert!(!completed(&ran).from_cache);
    let reused = run_events(&second, rotate(&second, "tenant-1", "task-2")).await;
    assert!(completed(&reused).from_cache);
    assert_eq!(outputs(&reused)[0].key, outputs(&ran)[0].key);
    assert!(outputs(&reused)[0].url.starts_with("s3://"));
    assert_eq!(second.metric(ENGINE_RUNS).await, 0.0);
    assert_eq!(second.metric(HITS).await, 1.0);

    // An object gone from the bucket makes the entry a miss, not an error.
    let thumb = outputs(&ran)[0].thumbnail.clone().expect("thumbnail");
    second.storage.delete(&thumb.key).await.expect("delete");
    let again = run_events(&second, rotate(&second, "tenant-1", "task-3")).await;
    assert!(!completed(&again).from_cache);
    assert_eq!(second.metric(ENGINE_RUNS).await, 1.0);
}

#[tokio::test]
async fn a_processor_with_the_cache_turned_off_always_runs() {
    let app = spawn_app_with(|config| config.content_cache = false).await;
    for task in ["task-1", "task-2"] {
        let events = run_events(&app, rotate(&app, "tenant-1", task)).await;
        assert!(!completed(&events).from_cache);
    }
    assert_eq!(app.metric(ENGINE_RUNS).await, 2.0);
    assert!(app.local_files_under("t/tenant-1/cache").is_empty());
}
