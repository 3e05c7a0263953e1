//! Segmentation models run in-process: IS-Net (DIS), U²-Net (and u2netp) and BiRefNet, as ONNX
//! files, through ONNX Runtime loaded from its shared library at start (`libonnxruntime.so`, for
//! example from PyPI's `onnxruntime` wheel; `scripts/install-onnxruntime.sh` fetches it).
//!
//! Each model is loaded once, checked (one image input of 3 channels, one mask output), warmed up
//! and shared. [`Segmenter::segment`] does what the reference pipeline (rembg) does around the
//! model: the photo is resized to the model's square input (Lanczos3), scaled by its brightest
//! value, normalised with the family's mean and standard deviation, and the first output channel is
//! stretched to 0..1 (BiRefNet's logits pass through a sigmoid first). The engine turns that mask
//! into a full-resolution alpha.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use atelier_engine::{EngineError, SegmentationMask};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use ort::session::Session;
use ort::value::Tensor;

/// A family of segmentation models: its input side and normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IS-Net / DIS: 1024², mean 0.5, std 1.
    IsNet,
    /// U²-Net and u2netp: 320², ImageNet mean and std.
    U2Net,
    /// BiRefNet: 1024², ImageNet mean and std, logits out.
    BiRefNet,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Family {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::IsNet => "isnet",
            Family::U2Net => "u2net",
            Family::BiRefNet => "birefnet",
        }
    }

    /// Side of the square input the family was trained at.
    pub fn side(self) -> u32 {
        match self {
            Family::IsNet | Family::BiRefNet => 1024,
            Family::U2Net => 320,
        }
    }

    fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Family::IsNet => ([0.5; 3], [1.0; 3]),
            Family::U2Net | Family::BiRefNet => (IMAGENET_MEAN, IMAGENET_STD),
        }
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "isnet" => Ok(Family::IsNet),
            "u2net" => Ok(Family::U2Net),
            "birefnet" => Ok(Family::BiRefNet),
            other => Err(format!(
                "unknown model family {other:?}: use isnet, u2net or birefnet"
            )),
        }
    }
}

/// A configured model: `FAMILY:PATH`, named after its file (`isnet:/models/isnet-general-use.onnx`
/// is `isnet-general-use`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name jobs and ListModels use.
    pub name: String,
    /// Its family.
    pub family: Family,
    /// The ONNX file.
    pub path: PathBuf,
}

impl FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (family, path) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected FAMILY:PATH, e.g. isnet:/models/isnet.onnx"))?;
        let family = family.parse()?;
        let path = PathBuf::from(path.trim());
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{s:?}: the path names no file"))?
            .to_string();
        Ok(ModelSpec { name, family, path })
    }
}

/// Why a model could not be made ready; each names the file and the problem.
#[derive(thiserror::Error, Debug)]
pub enum LoadError {
    /// The ONNX Runtime library could not be loaded.
    #[error("ONNX Runtime could not be loaded from {path}: {reason} (install it with scripts/install-onnxruntime.sh, or point --onnxruntime at libonnxruntime.so)")]
    Runtime {
        /// The library path tried.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model file is missing or unreadable.
    #[error("matting model {path}: {reason}")]
    File {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not an ONNX model ONNX Runtime accepts.
    #[error("matting model {path} is not a usable ONNX model: {reason}")]
    Corrupt {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's words.
        reason: String,
    },
    /// The model's inputs or outputs are not those of a segmentation model of its family.
    #[error("matting model {path} has the wrong shape for {family}: {reason}")]
    Shape {
        /// The model file.
        path: PathBuf,
        /// The configured family.
        family: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// The warm-up run failed.
    #[error("matting model {path} failed its warm-up run: {reason}")]
    WarmUp {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once per process; later calls reuse the first answer).
pub fn load_runtime(library: &Path) -> Result<(), LoadError> {
    if !library.is_file() {
        return Err(LoadError::Runtime {
            path: library.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let env = ENVIRONMENT.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("atelier-matting")
            .build()
            .map_err(|e| e.to_string())
    });
    match env {
        Ok(_) => Ok(()),
        Err(reason) => Err(LoadError::Runtime {
            path: library.to_path_buf(),
            reason: reason.clone(),
        }),
    }
}

/// A loaded, checked, warmed-up model, shared by every task.
pub struct Segmenter {
    spec: ModelSpec,
    input: String,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("spec", &self.spec)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Segmenter {
    /// Loads `spec` with `sessions` independent sessions (runs at once) of `threads` threads each.
    /// [`load_runtime`] must have succeeded first.
    pub fn load(spec: &ModelSpec, sessions: usize, threads: usize) -> Result<Self, LoadError> {
        let path = &spec.path;
        let env = match ENVIRONMENT.get() {
            Some(Ok(env)) => env,
            _ => {
                return Err(LoadError::Runtime {
                    path: PathBuf::from("(not loaded)"),
                    reason: "load_runtime was not called or failed".into(),
                })
            }
        };
        let bytes = std::fs::read(path).map_err(|e| LoadError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let corrupt = |e: &dyn std::fmt::Display| LoadError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut all = Vec::new();
        for _ in 0..sessions.max(1) {
            let session = Session::builder(env)
                .map_err(|e| corrupt(&e))?
                .with_intra_threads(threads.max(1))
                .map_err(|e| corrupt(&e))?
                .with_inter_threads(1)
                .map_err(|e| corrupt(&e))?
                .commit_from_memory(&bytes)
                .map_err(|e| corrupt(&e))?;
            all.push(Mutex::new(session));
        }
        let input = {
            let first = all[0].lock().map_err(|_| corrupt(&"poisoned"))?;
            check_shape(&first, spec)?
        };
        let segmenter = Segmenter {
            spec: spec.clone(),
            input,
            sessions: all,
            next: AtomicUsize::new(0),
        };
        // One run per session so the first job does not pay for ONNX Runtime's set-up.
        let grey = RgbImage::from_pixel(64, 64, image::Rgb([128, 128, 128]));
        for i in 0..segmenter.sessions.len() {
            segmenter.run_on(i, &grey).map_err(|e| LoadError::WarmUp {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        tracing::info!(model = %spec.name, family = spec.family.as_str(), path = %path.display(), "matting model ready");
        Ok(segmenter)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The model's family.
    pub fn family(&self) -> Family {
        self.spec.family
    }

    /// The model's mask of `rgb` (blocking; run it on a blocking thread).
    pub fn segment(&self, rgb: &RgbImage) -> Result<SegmentationMask, EngineError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        self.run_on(i, rgb)
    }

    fn run_on(&self, index: usize, rgb: &RgbImage) -> Result<SegmentationMask, EngineError> {
        let side = self.spec.family.side();
        let input = preprocess(rgb, self.spec.family)?;
        let tensor = Tensor::from_array(([1usize, 3, side as usize, side as usize], input))
            .map_err(|e| EngineError::Matting(format!("input tensor: {e}")))?;
        let mut session = self.sessions[index]
            .lock()
            .map_err(|_| EngineError::Matting("a model session was poisoned by a panic".into()))?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| EngineError::Matting(format!("{}: {e}", self.spec.name)))?;
        let (shape, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Matting(format!("{}: output: {e}", self.spec.name)))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        let (h, w) = match dims.as_slice() {
            [_, _, h, w] | [_, h, w] => (*h, *w),
            other => {
                return Err(EngineError::Matting(format!(
                    "{}: output shape {other:?} is not a mask",
                    self.spec.name
                )))
            }
        };
        let (h, w) = (
            u32::try_from(h).map_err(|_| EngineError::Matting("bad output height".into()))?,
            u32::try_from(w).map_err(|_| EngineError::Matting("bad output width".into()))?,
        );
        let plane = values
            .get(..(w as usize * h as usize))
            .ok_or_else(|| EngineError::Matting("the output is shorter than its shape".into()))?;
        SegmentationMask::new(w, h, postprocess(plane, self.spec.family))
    }
}

/// Checks the model has one 4-D float input of 3 channels at the family's side (or dynamic) and a
/// mask output; returns the input's name.
fn check_shape(session: &Session, spec: &ModelSpec) -> Result<String, LoadError> {
    let wrong = |reason: String| LoadError::Shape {
        path: spec.path.clone(),
        family: spec.family.as_str(),
        reason,
    };
    let [input] = session.inputs() else {
        return Err(wrong(format!(
            "{} inputs, expected one image",
            session.inputs().len()
        )));
    };
    let dims: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let side = i64::from(spec.family.side());
    let fits = |d: i64, want: i64| d == want || d < 0;
    match dims.as_slice() {
        [n, c, h, w] if fits(*n, 1) && fits(*c, 3) && fits(*h, side) && fits(*w, side) => {}
        other => {
            return Err(wrong(format!(
                "input {:?} is {other:?}, expected [1, 3, {side}, {side}]",
                input.name()
            )))
        }
    }
    let Some(output) = session.outputs().first() else {
        return Err(wrong("no outputs".into()));
    };
    let out: Vec<i64> = output
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    match out.as_slice() {
        [_, c, _, _] if fits(*c, 1) => {}
        [_, _, _] => {}
        other => {
            return Err(wrong(format!(
                "output {:?} is {other:?}, expected a one-channel mask",
                output.name()
            )))
        }
    }
    Ok(input.name().to_string())
}

/// The photo as the model's NCHW input: resized to the square side (Lanczos3, aspect ignored as
/// the models were trained), divided by its brightest value, normalised per channel.
fn preprocess(rgb: &RgbImage, family: Family) -> Result<Vec<f32>, EngineError> {
    let side = family.side();
    // The photo is read in place (a 12 MP copy would cost more than the resize's set-up).
    let mut dst = Image::new(side, side, PixelType::U8x3);
    Resizer::new()
        .resize(
            rgb,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| EngineError::Matting(format!("model input resize: {e}")))?;
    let pixels = dst.buffer();
    let max = f32::from(pixels.iter().copied().max().unwrap_or(0)).max(1e-6);
    let (mean, std) = family.mean_std();
    let plane = (side * side) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / max - mean[c]) / std[c];
        }
    }
    Ok(out)
}

/// The model's first channel stretched to 0..1 (after a sigmoid for BiRefNet's logits).
fn postprocess(plane: &[f32], family: Family) -> Vec<f32> {
    let values: Vec<f32> = match family {
        Family::BiRefNet => plane.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        Family::IsNet | Family::U2Net => plane.to_vec(),
    };
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !(hi - lo).is_finite() || hi - lo < 1e-6 {
        return vec![0.0; values.len()];
    }
    values.iter().map(|v| (v - lo) / (hi - lo)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_family_and_path_and_are_named_after_the_file() {
        let spec: ModelSpec = "isnet:/models/isnet-general-use.onnx"
            .parse()
            .expect("spec");
        assert_eq!(spec.family, Family::IsNet);
        assert_eq!(spec.name, "isnet-general-use");
        assert_eq!(spec.path, PathBuf::from("/models/isnet-general-use.onnx"));
        assert_eq!(
            "U2NET:u2netp.onnx"
                .parse::<ModelSpec>()
                .map(|s| (s.family, s.name)),
            Ok((Family::U2Net, "u2netp".to_string()))
        );
        for bad in ["isnet", "sam:/m.onnx", "birefnet:", "birefnet:/"] {
            assert!(bad.parse::<ModelSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn preprocessing_matches_the_reference_normalisation() {
        let rgb = RgbImage::from_pixel(50, 40, image::Rgb([200, 100, 0]));
        let input = preprocess(&rgb, Family::U2Net).expect("input");
        let plane = 320 * 320;
        assert_eq!(input.len(), 3 * plane);
        // Top-left pixel: red 200 is the brightest value, so it becomes 1.0 before normalising.
        let r = input[0];
        assert!((r - (1.0 - 0.485) / 0.229).abs() < 1e-3, "{r}");
        let g = input[plane];
        assert!((g - (0.5 - 0.456) / 0.224).abs() < 1e-3, "{g}");
        let isnet = preprocess(&rgb, Family::IsNet).expect("input");
        assert!((isnet[0] - 0.5).abs() < 1e-3, "{}", isnet[0]);
    }

    #[test]
    fn postprocessing_stretches_and_squashes_logits() {
        assert_eq!(
            postprocess(&[2.0, 4.0, 3.0], Family::IsNet),
            vec![0.0, 1.0, 0.5]
        );
        assert_eq!(postprocess(&[1.0, 1.0], Family::U2Net), vec![0.0, 0.0]);
        let b = postprocess(&[-10.0, 0.0, 10.0], Family::BiRefNet);
        assert!(
            b[0] == 0.0 && b[2] == 1.0 && (b[1] - 0.5).abs() < 0.01,
            "{b:?}"
        );
    }
}
