//! Real ONNX Runtime, tiny generated models with a known answer, and the start-up errors a bad
//! model file gives.

use atelier_matting::{load_runtime, LoadError, ModelSpec, Segmenter};
use atelier_testkit::onnx::{onnxruntime_library, red_channel_model};
use image::{Rgb, RgbImage};

fn runtime() {
    load_runtime(&onnxruntime_library()).expect("ONNX Runtime loads");
}

fn model_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write model");
    path
}

#[test]
fn a_model_runs_and_its_mask_is_the_known_answer() {
    runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let path = model_file(&dir, "red-u2net.onnx", &red_channel_model(320, 3));
    let spec: ModelSpec = format!("u2net:{}", path.display()).parse().expect("spec");
    let segmenter = Segmenter::load(&spec, 2, 1).expect("loads");
    assert_eq!(segmenter.name(), "red-u2net");
    // Left half bright red (the subject), right half without red: the mask is 1 then 0.
    let photo = RgbImage::from_fn(640, 480, |x, _| {
        if x < 320 {
            Rgb([250, 40, 40])
        } else {
            Rgb([0, 90, 200])
        }
    });
    for _ in 0..3 {
        let mask = segmenter.segment(&photo).expect("segment");
        assert_eq!((mask.width, mask.height), (320, 320));
        let at = |x: usize, y: usize| mask.values[y * 320 + x];
        // Lanczos rings a little at the step, so the stretch ends a hair beyond the flat colours.
        assert!(at(10, 100) > 0.97, "{}", at(10, 100));
        assert!(at(300, 200) < 0.03, "{}", at(300, 200));
        assert!(mask.confidence() > 0.95);
    }
}

#[test]
fn bad_model_files_stop_start_up_with_the_file_and_the_problem() {
    runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nowhere.onnx");
    let err = Segmenter::load(
        &format!("isnet:{}", missing.display())
            .parse()
            .expect("spec"),
        1,
        1,
    )
    .expect_err("missing");
    assert!(matches!(err, LoadError::File { .. }), "{err}");
    assert!(err.to_string().contains("nowhere.onnx"), "{err}");

    let corrupt = model_file(&dir, "corrupt.onnx", b"this is not a protobuf of a model");
    let err = Segmenter::load(
        &format!("isnet:{}", corrupt.display())
            .parse()
            .expect("spec"),
        1,
        1,
    )
    .expect_err("corrupt");
    assert!(matches!(err, LoadError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.onnx"), "{err}");

    // One input channel, and the wrong side for the family.
    let grey = model_file(&dir, "grey.onnx", &red_channel_model(320, 1));
    let err = Segmenter::load(
        &format!("u2net:{}", grey.display()).parse().expect("spec"),
        1,
        1,
    )
    .expect_err("wrong channels");
    assert!(matches!(err, LoadError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("grey.onnx"), "{err}");
    let small = model_file(&dir, "small.onnx", &red_channel_model(320, 3));
    let err = Segmenter::load(
        &format!("isnet:{}", small.display()).parse().expect("spec"),
        1,
        1,
    )
    .expect_err("wrong side");
    assert!(err.to_string().contains("1024"), "{err}");
}

#[test]
fn a_missing_runtime_is_named() {
    let err = load_runtime(std::path::Path::new("/nonexistent/libonnxruntime.so"))
        .expect_err("no such library");
    assert!(
        err.to_string().contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(err.to_string().contains("install-onnxruntime.sh"), "{err}");
}
