//! basic_clean's matting through the real processor: a segmentation model loaded at start (a tiny
//! generated ONNX model with a known mask, run by the real ONNX Runtime), the method and
//! confidence on every output, 3010 for a busy real photo under the classical method, and the
//! start-up errors of bad model files.

use atelier_codes::ErrorCode;
use atelier_proto::v1;
use atelier_testkit::images::real_photo;
use atelier_testkit::onnx::{onnxruntime_library, red_channel_model};

use crate::helpers::{request, spawn_app, spawn_app_with, TestApp};

fn clean(
    method: v1::MattingMethod,
    model: &str,
    min_confidence: Option<f32>,
) -> v1::job_params::Params {
    v1::job_params::Params::BasicClean(v1::BasicCleanParams {
        template: v1::CleanTemplate::All as i32,
        model: model.into(),
        method: method as i32,
        min_confidence,
    })
}

/// A processor with the red-channel model loaded as U²-Net family model `red-u2net`.
async fn with_model(dir: &tempfile::TempDir) -> TestApp {
    let path = dir.path().join("red-u2net.onnx");
    std::fs::write(&path, red_channel_model(320, 3)).expect("model file");
    let spec = format!("u2net:{}", path.display()).parse().expect("spec");
    spawn_app_with(|c| {
        c.matting_models = vec![spec];
        c.onnxruntime = onnxruntime_library();
        // auto and model resolve to the same model, so the second run would be a cache hit.
        c.content_cache = false;
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

/// A photo whose red channel is the subject: red left half, blue right half, edge at x = 403.
fn split_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(801, 601, |x, _| {
        if x < 403 {
            image::Rgb([230, 40, 40])
        } else {
            image::Rgb([20, 60, 210])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

#[tokio::test]
async fn a_configured_model_cuts_out_and_every_output_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = with_model(&dir).await;
    let source = stored(&app, "split.png", split_png()).await;
    for method in [v1::MattingMethod::Auto, v1::MattingMethod::Model] {
        let req = request(clean(method, "", None), source.clone(), "jobs/job-1/task-1");
        let (_, outputs) = app.run_ok(req).await;
        assert_eq!(outputs.len(), 3);
        for output in &outputs {
            let m = output.matting.as_ref().expect("matting info");
            assert_eq!(
                (m.method.as_str(), m.model.as_str()),
                ("model", "red-u2net")
            );
            assert!(m.confidence > 0.9, "{}", m.confidence);
        }
        let png = app
            .storage
            .get(&outputs[0].key, u64::MAX)
            .await
            .expect("stored");
        let cut = image::load_from_memory(&png).expect("png").into_rgba8();
        // The model's mask is the red half; the refined edge sits on the photo's own edge.
        assert_eq!(cut.get_pixel(100, 300).0[3], 255);
        assert_eq!(cut.get_pixel(700, 300).0[3], 0);
        assert!(
            cut.get_pixel(401, 300).0[3] >= 240,
            "{:?}",
            cut.get_pixel(401, 300)
        );
        assert!(
            cut.get_pixel(405, 300).0[3] <= 15,
            "{:?}",
            cut.get_pixel(405, 300)
        );
    }
    // Asked for by name, and refused by a name it does not have.
    let named = request(
        clean(v1::MattingMethod::Model, "red-u2net", None),
        source.clone(),
        "jobs/job-1/task-2",
    );
    app.run_ok(named).await;
    let unknown = request(
        clean(v1::MattingMethod::Auto, "birefnet-hr", None),
        source.clone(),
        "jobs/job-1/task-3",
    );
    let failure = app.run_err(unknown).await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    assert!(failure.message.contains("red-u2net"), "{}", failure.message);
    // The classical method is still there when asked for.
    let classical = request(
        clean(v1::MattingMethod::Classical, "", Some(0.0)),
        source,
        "jobs/job-1/task-4",
    );
    let (_, outputs) = app.run_ok(classical).await;
    let m = outputs[0].matting.as_ref().expect("matting info");
    assert_eq!((m.method.as_str(), m.model.as_str()), ("classical", ""));
}

#[tokio::test]
async fn capabilities_list_the_matting_models() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = with_model(&dir).await;
    let caps = app
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    let onnx = caps
        .providers
        .iter()
        .find(|p| p.name == "onnx")
        .expect("the local models are listed");
    assert_eq!(onnx.models.len(), 1);
    assert_eq!(onnx.models[0].id, "red-u2net");
    assert_eq!(onnx.models[0].kinds, [v1::JobKind::BasicClean as i32]);
}

#[tokio::test]
async fn a_busy_real_photo_is_refused_by_the_classical_method() {
    let app = spawn_app().await;
    // A coffee cup on a wooden table (scikit-image's sample): no plain backdrop to measure.
    let source = stored(&app, "coffee.png", real_photo("coffee.png")).await;
    let auto = request(
        clean(v1::MattingMethod::Auto, "", None),
        source.clone(),
        "jobs/job-1/task-1",
    );
    let failure = app.run_err(auto).await;
    assert_eq!(failure.code, ErrorCode::MattingUncertain);
    assert!(
        failure.message.contains("--matting-model"),
        "{}",
        failure.message
    );
    // A model is asked for but there is none: 3006, not a silent classical cut-out.
    let model = request(
        clean(v1::MattingMethod::Model, "", None),
        source.clone(),
        "jobs/job-1/task-2",
    );
    assert_eq!(app.run_err(model).await.code, ErrorCode::ModelUnavailable);
    // The caller may accept a low-confidence cut-out explicitly, and is told how low it is.
    let loose = request(
        clean(v1::MattingMethod::Classical, "", Some(0.0)),
        source,
        "jobs/job-1/task-3",
    );
    let (_, outputs) = app.run_ok(loose).await;
    let confidence = outputs[0].matting.as_ref().map_or(1.0, |m| m.confidence);
    assert!(confidence < 0.5, "{confidence}");
}

#[tokio::test]
async fn bad_model_files_stop_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let corrupt = dir.path().join("broken-isnet.onnx");
    std::fs::write(&corrupt, b"not a model").expect("write");
    let grey = dir.path().join("grey-u2net.onnx");
    std::fs::write(&grey, red_channel_model(320, 1)).expect("write");
    let missing = dir.path().join("absent.onnx");
    for (spec, problem) in [
        (
            format!("isnet:{}", corrupt.display()),
            "not a usable ONNX model",
        ),
        (format!("u2net:{}", grey.display()), "wrong shape"),
        (format!("isnet:{}", missing.display()), "absent.onnx"),
    ] {
        let mut config = atelier_processor::Config::new(
            "token",
            dir.path().join("objects").display().to_string(),
        );
        config.matting_models = vec![spec.parse().expect("spec")];
        config.onnxruntime = onnxruntime_library();
        let err = atelier_processor::spawn(config)
            .await
            .expect_err("refuses to start");
        let text = err.to_string();
        assert!(text.contains(problem), "{spec}: {text}");
    }
    // A configured model without ONNX Runtime is a start-up error that says where to get it.
    let ok = dir.path().join("red.onnx");
    std::fs::write(&ok, red_channel_model(320, 3)).expect("write");
    let mut config =
        atelier_processor::Config::new("token", dir.path().join("objects").display().to_string());
    config.matting_models = vec![format!("u2net:{}", ok.display()).parse().expect("spec")];
    config.onnxruntime = dir.path().join("no-libonnxruntime.so");
    let err = atelier_processor::spawn(config)
        .await
        .expect_err("no runtime");
    assert!(err.to_string().contains("install-onnxruntime.sh"), "{err}");
}
