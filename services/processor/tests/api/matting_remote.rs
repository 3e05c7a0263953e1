//! basic_clean through remote matting providers, against local servers speaking remove.bg's API and
//! a rembg server's: what is sent, field by field; the provider's cut-out becoming the outputs'
//! alpha; method, model and confidence on every output; the provider's errors as SPEC §5 codes;
//! the provider's concurrency limit; and GetCapabilities.

use std::time::{Duration, Instant};

use atelier_codes::ErrorCode;
use atelier_processor::{Config, Protocol, ProviderConfig};
use atelier_proto::v1::{self, process_event::Event};
use atelier_testkit::images::real_photo;
use atelier_testkit::matting::{inside_known_shape, MattingServer, REMOVE_BG_KEY};
use atelier_testkit::onnx::{onnxruntime_library, red_channel_model};

use crate::helpers::{collect, images, request, spawn_app_with, TestApp};

/// The remove.bg provider's name and its one model.
const REMOVE_BG: &str = "removebg";
const REMOVE_BG_MODEL: &str = "remove.bg";

fn clean(
    template: v1::CleanTemplate,
    method: v1::MattingMethod,
    model: &str,
) -> v1::job_params::Params {
    v1::job_params::Params::BasicClean(v1::BasicCleanParams {
        template: template as i32,
        model: model.into(),
        method: method as i32,
        min_confidence: None,
    })
}

fn auto() -> v1::job_params::Params {
    clean(v1::CleanTemplate::All, v1::MattingMethod::Auto, "")
}

fn remove_bg_config(server: &MattingServer, key: &str) -> ProviderConfig {
    ProviderConfig::matting(
        REMOVE_BG,
        Protocol::RemoveBg,
        &server.base_url(),
        Some(key),
        &[REMOVE_BG_MODEL],
    )
}

/// A processor whose only matting is the fake remove.bg, adjusted by `tweak`.
async fn with_remove_bg(
    server: &MattingServer,
    tweak: impl FnOnce(&mut Config, &mut ProviderConfig),
) -> TestApp {
    let mut provider = remove_bg_config(server, REMOVE_BG_KEY);
    spawn_app_with(|config| {
        tweak(config, &mut provider);
        config.providers.insert(0, provider);
    })
    .await
}

/// Puts `bytes` in the processor's storage and returns the object source.
async fn stored(app: &TestApp, name: &str, bytes: Vec<u8>) -> v1::source_ref::Source {
    let key = format!("uploads/u1/{name}");
    app.storage
        .put(&key, bytes.into(), "image/png")
        .await
        .expect("put source");
    v1::source_ref::Source::ObjectKey(key)
}

/// The stored `matting.png` among `outputs`, decoded.
async fn cut_out(app: &TestApp, outputs: &[v1::Output]) -> image::RgbaImage {
    let output = outputs
        .iter()
        .find(|o| o.name == "matting.png")
        .expect("a matting.png output");
    let png = app
        .storage
        .get(&output.key, u64::MAX)
        .await
        .expect("stored");
    images::decode(&png).into_rgba8()
}

/// Checks the cut-out's alpha is the services' known shape, away from its edges (which the engine
/// refines against the photo).
fn assert_known_shape(cut: &image::RgbaImage) {
    let (w, h) = cut.dimensions();
    let margin = (w.min(h) / 25).max(4);
    let mut checked = 0;
    for y in (0..h).step_by(7) {
        for x in (0..w).step_by(7) {
            let near_edge = [w / 4, 3 * w / 4].iter().any(|&e| x.abs_diff(e) <= margin)
                || [h / 4, 3 * h / 4].iter().any(|&e| y.abs_diff(e) <= margin);
            if near_edge {
                continue;
            }
            let alpha = cut.get_pixel(x, y).0[3];
            if inside_known_shape(x, y, w, h) {
                assert!(alpha >= 250, "({x}, {y}) should be subject: {alpha}");
            } else {
                assert!(alpha <= 5, "({x}, {y}) should be background: {alpha}");
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}

fn assert_remote(outputs: &[v1::Output], model: &str) {
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    for output in outputs {
        let m = output.matting.as_ref().expect("matting info");
        assert_eq!((m.method.as_str(), m.model.as_str()), ("remote", model));
        // The services' alpha is all 0 or 255, a quarter of the frame: a sure cut-out.
        assert!(m.confidence > 0.99, "{}", m.confidence);
    }
}

#[tokio::test]
async fn remove_bg_cuts_out_a_real_photo_and_every_output_says_so() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |_, _| {}).await;
    // A coffee cup on a wooden table: the classical method refuses it (3010), remove.bg does not.
    let photo = real_photo("coffee.png");
    let source = stored(&app, "coffee.png", photo.clone()).await;
    let (events, outputs) = app
        .run_ok(request(auto(), source.clone(), "jobs/job-1/task-1"))
        .await;
    assert_remote(&outputs, REMOVE_BG_MODEL);
    let cut = cut_out(&app, &outputs).await;
    assert_eq!(cut.dimensions(), (600, 400));
    assert_known_shape(&cut);
    assert!(events.iter().any(|e| matches!(e, Event::Log(l)
        if l.message.contains("matting provider `removebg`"))));

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v1.0/removebg")
    );
    assert_eq!(call.api_key.as_deref(), Some(REMOVE_BG_KEY));
    assert_eq!(call.authorization, None);
    assert_eq!(call.parts, ["size", "format", "image_file"]);
    assert_eq!(call.fields["size"], "full");
    assert_eq!(call.fields["format"], "png");
    assert_eq!(
        call.image.as_deref(),
        Some(photo.as_slice()),
        "the source bytes as stored"
    );

    // The same task again is served from the content cache: no second call, no second credit.
    let (events, failure) = app
        .run(request(auto(), source.clone(), "jobs/job-1/task-2"))
        .await;
    assert!(failure.is_none(), "{failure:?}");
    assert!(matches!(
        events.last(),
        Some(Event::Completed(v1::Completed {
            from_cache: true,
            ..
        }))
    ));
    // The enhanced template has nothing to cut out: no call either.
    let enhanced = clean(v1::CleanTemplate::Enhanced, v1::MattingMethod::Auto, "");
    let (_, outputs) = app
        .run_ok(request(enhanced, source, "jobs/job-1/task-3"))
        .await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_smaller_answer_is_refined_back_to_the_photo_size() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |_, provider| {
        provider.size = Some("preview".into());
    })
    .await;
    // 1200x900 is 1.08 megapixels; remove.bg's preview answers at most 0.25.
    let source = stored(&app, "big.png", images::png(1200, 900)).await;
    let (_, outputs) = app
        .run_ok(request(auto(), source, "jobs/job-1/task-1"))
        .await;
    assert_remote(&outputs, REMOVE_BG_MODEL);
    let cut = cut_out(&app, &outputs).await;
    assert_eq!(cut.dimensions(), (1200, 900));
    assert_known_shape(&cut);
    assert_eq!(server.seen()[0].fields["size"], "preview");
}

#[tokio::test]
async fn a_rembg_server_from_the_providers_file_gets_the_file_and_the_model() {
    let server = MattingServer::rembg().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("providers.toml");
    let text = format!(
        "[[providers]]\nname = \"rembg\"\nprotocol = \"rembg\"\nbase_url = \"{}\"\n\
         models = [{{ id = \"isnet-general-use\", kinds = [\"basic_clean\"] }},\n\
                   {{ id = \"u2net\", kinds = [\"basic_clean\"] }}]\n",
        server.base_url()
    );
    std::fs::write(&path, text).expect("write file");
    let app = spawn_app_with(|config| config.providers_file = Some(path.clone())).await;
    let photo = real_photo("chelsea.png");
    let source = stored(&app, "cat.png", photo.clone()).await;

    // No name: the first model; by name: that one.
    let (_, outputs) = app
        .run_ok(request(auto(), source.clone(), "jobs/job-1/task-1"))
        .await;
    assert_remote(&outputs, "isnet-general-use");
    assert_known_shape(&cut_out(&app, &outputs).await);
    let named = clean(v1::CleanTemplate::All, v1::MattingMethod::Model, "u2net");
    let (_, outputs) = app
        .run_ok(request(named, source.clone(), "jobs/job-1/task-2"))
        .await;
    assert_remote(&outputs, "u2net");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for (call, model) in seen.iter().zip(["isnet-general-use", "u2net"]) {
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            ("POST", "/api/remove")
        );
        assert_eq!(call.parts, ["model", "file"]);
        assert_eq!(call.fields["model"], model);
        assert_eq!(call.image.as_deref(), Some(photo.as_slice()));
        assert_eq!(
            (call.api_key.as_deref(), call.authorization.as_deref()),
            (None, None)
        );
    }

    // A model no one offers is refused before any call, naming those that are.
    let unknown = clean(
        v1::CleanTemplate::All,
        v1::MattingMethod::Auto,
        "birefnet-hr",
    );
    let failure = app
        .run_err(request(unknown, source, "jobs/job-1/task-3"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    assert!(
        failure.message.contains("isnet-general-use (rembg)"),
        "{}",
        failure.message
    );
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn out_of_credits_and_a_refused_key_are_not_retried() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |_, _| {}).await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    server.fail_next(1, 402);
    let failure = app
        .run_err(request(auto(), source.clone(), "jobs/job-1/task-1"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(!failure.transient, "topping up takes a person");
    assert!(
        failure.message.contains("out of credits")
            && failure.message.contains("Insufficient credits"),
        "{}",
        failure.message
    );
    let series = format!(
        r#"atelier_processor_provider_calls_total{{provider="{REMOVE_BG}",result="out_of_credits"}}"#
    );
    assert_eq!(app.metric(&series).await, 1.0);
    assert!(app.local_files_under("jobs/job-1/task-1").is_empty());

    let wrong_key = MattingServer::remove_bg().await;
    let app = with_remove_bg(&wrong_key, |_, provider| {
        *provider = remove_bg_config(&wrong_key, "rb-wrong-key");
    })
    .await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    let failure = app
        .run_err(request(auto(), source, "jobs/job-1/task-1"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("API key refused"),
        "{}",
        failure.message
    );
    assert!(
        !failure.message.contains("rb-wrong-key"),
        "{}",
        failure.message
    );
    assert_eq!(wrong_key.seen()[0].api_key.as_deref(), Some("rb-wrong-key"));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_and_a_short_retry_after_is_waited_out() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |config, _| config.content_cache = false).await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    let run_err = |task: &str| app.run_err(request(auto(), source.clone(), task));

    // 429 without Retry-After, or asking for longer than an attempt should wait: fail now, retried.
    for (retry_after, task) in [(None, "jobs/j/t1"), (Some(60), "jobs/j/t2")] {
        let before = server.calls();
        server.fail_next_retry_after(1, 429, retry_after);
        let failure = run_err(task).await;
        assert_eq!(failure.code, ErrorCode::ModelCallFailed);
        assert!(failure.transient, "{retry_after:?}");
        assert!(
            failure.message.contains("Rate limit exceeded"),
            "{}",
            failure.message
        );
        assert_eq!(server.calls() - before, 1);
        if retry_after.is_some() {
            assert!(
                failure.message.contains("retry after 60 s"),
                "{}",
                failure.message
            );
        }
    }
    // A short Retry-After is waited out once, within the attempt.
    let before = server.calls();
    server.fail_next_retry_after(1, 429, Some(1));
    let started = Instant::now();
    let (_, outputs) = app
        .run_ok(request(auto(), source.clone(), "jobs/j/t3"))
        .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_remote(&outputs, REMOVE_BG_MODEL);
    assert_eq!(server.calls() - before, 2);
    // Twice in a row: the attempt fails, retryable.
    let before = server.calls();
    server.fail_next_retry_after(2, 429, Some(1));
    assert!(run_err("jobs/j/t4").await.transient);
    assert_eq!(server.calls() - before, 2);

    for (status, task) in [(500, "jobs/j/t5"), (503, "jobs/j/t6")] {
        server.fail_next(1, status);
        let failure = run_err(task).await;
        assert_eq!(failure.code, ErrorCode::ModelCallFailed);
        assert!(failure.transient, "{status}");
    }
}

#[tokio::test]
async fn no_foreground_is_matting_uncertain() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |_, _| {}).await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    server.fail_next(1, 400);
    let failure = app
        .run_err(request(auto(), source, "jobs/job-1/task-1"))
        .await;
    assert_eq!(failure.code, ErrorCode::MattingUncertain);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("Could not identify foreground"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn an_answer_that_is_not_a_cut_out_of_the_photo_fails_and_stores_nothing() {
    let server = MattingServer::rembg().await;
    let provider = ProviderConfig::matting(
        "rembg",
        Protocol::Rembg,
        &server.base_url(),
        None,
        &["u2net"],
    );
    let app = spawn_app_with(|config| {
        config.providers = vec![provider];
        config.content_cache = false;
    })
    .await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    let png = |img: image::DynamicImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    };
    let cases = [
        (b"<html>busy</html>".to_vec(), "not a PNG"),
        (
            png(image::DynamicImage::ImageRgb8(image::RgbImage::new(
                600, 400,
            ))),
            "no alpha",
        ),
        // Sideways: the shape of the photo turned a quarter.
        (
            png(image::DynamicImage::ImageRgba8(image::RgbaImage::new(
                400, 600,
            ))),
            "400x600",
        ),
    ];
    for (i, (answer, problem)) in cases.into_iter().enumerate() {
        server.answer_with_bytes(Some(answer));
        let prefix = format!("jobs/job-1/task-{i}");
        let failure = app.run_err(request(auto(), source.clone(), &prefix)).await;
        assert_eq!(failure.code, ErrorCode::ModelCallFailed, "{problem}");
        assert!(!failure.transient, "{problem}");
        assert!(failure.message.contains(problem), "{}", failure.message);
        assert!(app.local_files_under(&prefix).is_empty());
    }
}

/// Starts `req` and reads its stream up to the first matting progress, which the processor sends
/// just before it calls the matting provider.
async fn until_the_call(
    app: &TestApp,
    req: v1::ProcessRequest,
) -> tonic::Streaming<v1::ProcessEvent> {
    let mut client = app.client.clone();
    let mut stream = client.process(req).await.expect("accepted").into_inner();
    loop {
        let event = stream
            .message()
            .await
            .expect("stream")
            .and_then(|e| e.event)
            .expect("an event before the end");
        if matches!(&event, Event::Progress(p) if p.stage == "matting") {
            return stream;
        }
    }
}

#[tokio::test]
async fn the_provider_never_sees_more_calls_than_its_limit() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |config, provider| {
        provider.max_concurrency = 2;
        config.content_cache = false;
    })
    .await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    server.hold();
    let mut streams = Vec::new();
    for i in 0..4 {
        let req = request(auto(), source.clone(), &format!("jobs/job-1/task-{i}"));
        streams.push(until_the_call(&app, req).await);
    }
    // All four tasks are at their call: two are let through, two wait for a slot.
    server.wait_in_flight(2).await;
    let gauge = format!(r#"atelier_processor_provider_calls_in_flight{{provider="{REMOVE_BG}"}}"#);
    assert_eq!(app.metric(&gauge).await, 2.0);
    // Let the calls through one at a time, each time only once the limit is reached again, so that
    // a processor ignoring the limit would pile more calls up at the gate.
    for remaining in (1..=4usize).rev() {
        server.wait_in_flight(remaining.min(2)).await;
        assert!(server.in_flight() <= 2, "{} in flight", server.in_flight());
        server.release(1);
    }
    for stream in streams {
        let (events, failure) = collect(stream).await;
        assert!(failure.is_none(), "{failure:?}");
        assert_eq!(crate::helpers::outputs(&events).len(), 3);
    }
    assert_eq!(server.calls(), 4);
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn dropping_the_stream_abandons_the_call_and_stores_nothing() {
    let server = MattingServer::remove_bg().await;
    let app = with_remove_bg(&server, |_, _| {}).await;
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    server.hold();
    let stream = until_the_call(&app, request(auto(), source, "jobs/job-1/task-1")).await;
    server.wait_in_flight(1).await;
    drop(stream);
    // The processor hangs up on the service only because the task was cancelled.
    tokio::time::timeout(Duration::from_secs(10), server.wait_abandoned(1))
        .await
        .expect("the call is abandoned when the caller leaves");
    server.release_all();
    assert!(app.local_files_under("jobs/job-1/task-1").is_empty());
    let series = format!(
        r#"atelier_processor_provider_calls_total{{provider="{REMOVE_BG}",result="cancelled"}}"#
    );
    assert_eq!(app.metric(&series).await, 1.0);
}

#[tokio::test]
async fn a_local_model_comes_first_and_a_remote_one_serves_by_name() {
    let server = MattingServer::remove_bg().await;
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("red-u2net.onnx");
    std::fs::write(&model, red_channel_model(320, 3)).expect("model file");
    let app = with_remove_bg(&server, |config, _| {
        config.matting_models = vec![format!("u2net:{}", model.display()).parse().expect("spec")];
        config.onnxruntime = onnxruntime_library();
    })
    .await;
    let source = stored(&app, "product.png", images::png(640, 480)).await;
    let (_, outputs) = app
        .run_ok(request(auto(), source.clone(), "jobs/job-1/task-1"))
        .await;
    let m = outputs[0].matting.as_ref().expect("matting info");
    assert_eq!(
        (m.method.as_str(), m.model.as_str()),
        ("model", "red-u2net")
    );
    assert_eq!(server.calls(), 0);
    let named = clean(
        v1::CleanTemplate::All,
        v1::MattingMethod::Model,
        REMOVE_BG_MODEL,
    );
    let (_, outputs) = app
        .run_ok(request(named, source, "jobs/job-1/task-2"))
        .await;
    assert_remote(&outputs, REMOVE_BG_MODEL);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn capabilities_list_the_remote_matting_models() {
    let removebg = MattingServer::remove_bg().await;
    let rembg = MattingServer::rembg().await;
    let mut rembg_config = ProviderConfig::matting(
        "rembg",
        Protocol::Rembg,
        &rembg.base_url(),
        None,
        &["isnet-general-use", "u2net"],
    );
    rembg_config.max_concurrency = 1;
    let app = with_remove_bg(&removebg, |config, _| {
        config.providers.push(rembg_config);
    })
    .await;
    let caps = app
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    // basic_clean is listed once, as always; the providers add no kind of their own.
    let kinds = [v1::JobKind::Transform, v1::JobKind::BasicClean].map(|k| k as i32);
    assert_eq!(caps.kinds, kinds);
    let model = |id: &str, provider: &str| v1::Model {
        id: id.into(),
        provider: provider.into(),
        kinds: vec![v1::JobKind::BasicClean as i32],
    };
    let expected = [
        v1::ProviderInfo {
            name: REMOVE_BG.into(),
            models: vec![model(REMOVE_BG_MODEL, REMOVE_BG)],
            max_concurrency: 3,
        },
        v1::ProviderInfo {
            name: "rembg".into(),
            models: vec![model("isnet-general-use", "rembg"), model("u2net", "rembg")],
            max_concurrency: 1,
        },
    ];
    assert_eq!(caps.providers, expected);
}
