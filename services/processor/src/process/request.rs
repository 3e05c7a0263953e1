//! The wire request turned into a validated task, once, at the edge.

use atelier_codes::FieldViolation;
use atelier_engine::{CleanTemplate, Crop, Fit, Format, Resize, Rotation, TransformRecipe};
use atelier_proto::v1;

use super::params::{self, EditWork, GenerateWork, PoseSetWork};
use super::ProcessError;
use crate::providers::{ModelKind, ModelRoute};

/// Quality used when the request says 0.
pub const DEFAULT_QUALITY: u8 = 85;

/// One validated task attempt.
#[derive(Debug)]
pub struct TaskRequest {
    /// Job the task belongs to (for logs).
    pub job_id: String,
    /// The task (for logs).
    pub task_id: String,
    /// The tenant: the content cache is scoped to it.
    pub tenant_id: String,
    /// The account the job is charged to (provider usage is counted per account).
    pub account: String,
    /// Attempt number (for logs).
    pub attempt: u32,
    /// What to make.
    pub work: Work,
    /// Where the source is; `None` for kinds without a source (generate).
    pub source: Option<SourceLocation>,
    /// Outputs go under this prefix, without a trailing `/`.
    pub output_prefix: String,
    /// The provider and model of a model kind, chosen after parsing.
    pub route: Option<ModelRoute>,
    /// How basic_clean cuts out, chosen after parsing.
    pub matting: Option<crate::matting::MattingRoute>,
    /// What the attempt's provider calls used so far.
    pub usage: super::usage::Usage,
}

/// What the engine or a model provider runs.
#[derive(Clone, Debug)]
pub enum Work {
    /// Resize, crop, rotate, flip, re-encode.
    Transform(TransformRecipe),
    /// Background removal (by the chosen matting method) and enhancement.
    BasicClean(CleanWork),
    /// Image + prompt through a provider's edits endpoint.
    Edit(EditWork),
    /// Prompt through a provider's generations endpoint.
    Generate(GenerateWork),
    /// 12 model shots of a product through a provider's edits endpoint.
    PoseSet(PoseSetWork),
}

impl Work {
    /// The kind's name, as in metrics and the SPEC.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transform(_) => "transform",
            Self::BasicClean(_) => "basic_clean",
            Self::Edit(_) => "edit",
            Self::Generate(_) => "generate",
            Self::PoseSet(_) => "pose_set",
        }
    }

    /// Which provider kind runs it; `None` for the local engine.
    pub fn model_kind(&self) -> Option<ModelKind> {
        match self {
            Self::Transform(_) | Self::BasicClean(_) => None,
            Self::Edit(_) => Some(ModelKind::Edit),
            Self::Generate(_) => Some(ModelKind::Generate),
            Self::PoseSet(_) => Some(ModelKind::PoseSet),
        }
    }

    /// The model the request named, if any.
    pub fn requested_model(&self) -> Option<&str> {
        match self {
            Self::Transform(_) | Self::BasicClean(_) => None,
            Self::Edit(e) => e.model.as_deref(),
            Self::Generate(g) => g.model.as_deref(),
            Self::PoseSet(p) => p.model.as_deref(),
        }
    }

    /// Whether the kind reads a source image.
    pub fn needs_source(&self) -> bool {
        !matches!(self, Self::Generate(_))
    }
}

/// basic_clean's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanWork {
    /// Which outputs.
    pub template: CleanTemplate,
    /// How the subject is found.
    pub method: MattingMethod,
    /// The matting model asked for; `None` for the processor's default.
    pub model: Option<String>,
    /// Below this the task fails with 3010.
    pub min_confidence: f32,
}

/// How basic_clean finds the subject, as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MattingMethod {
    /// The named or default model when there is one, else classical.
    Auto,
    /// A model; 3006 when none is configured.
    Model,
    /// The classical estimate.
    Classical,
}

/// The confidence floor when the request sets none.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

/// Where the source image is read from.
#[derive(Debug, Clone)]
pub enum SourceLocation {
    /// An http(s) URL.
    Url(String),
    /// A key in the shared object storage.
    Object(String),
}

impl TryFrom<v1::ProcessRequest> for TaskRequest {
    type Error = ProcessError;

    fn try_from(req: v1::ProcessRequest) -> Result<Self, Self::Error> {
        let mut violations = Vec::new();
        let work = match req.params.and_then(|p| p.params) {
            None => {
                violations.push(FieldViolation::new(
                    "params",
                    "set the parameters of one kind",
                ));
                None
            }
            Some(v1::job_params::Params::Transform(t)) => {
                transform_recipe(&t, &mut violations).map(Work::Transform)
            }
            Some(v1::job_params::Params::BasicClean(c)) => {
                clean_work(&c, &mut violations).map(Work::BasicClean)
            }
            Some(v1::job_params::Params::Edit(e)) => {
                Some(Work::Edit(params::edit(&e, &mut violations)))
            }
            Some(v1::job_params::Params::Generate(g)) => {
                Some(Work::Generate(params::generate(&g, &mut violations)))
            }
            Some(v1::job_params::Params::PoseSet(p)) => {
                Some(Work::PoseSet(params::pose_set(&p, &mut violations)))
            }
        };
        let wants_source = work.as_ref().is_none_or(Work::needs_source);
        let source = match req.source.and_then(|s| s.source) {
            // A kind without a source ignores one sent anyway.
            _ if !wants_source => None,
            None if wants_source => {
                violations.push(FieldViolation::new("source", "set a url or an object_key"));
                None
            }
            None => None,
            Some(v1::source_ref::Source::Url(url)) if url.trim().is_empty() => {
                violations.push(FieldViolation::new("source.url", "must not be empty"));
                None
            }
            Some(v1::source_ref::Source::ObjectKey(key)) if key.trim().is_empty() => {
                violations.push(FieldViolation::new(
                    "source.object_key",
                    "must not be empty",
                ));
                None
            }
            Some(v1::source_ref::Source::Url(url)) => {
                Some(SourceLocation::Url(url.trim().to_string()))
            }
            Some(v1::source_ref::Source::ObjectKey(key)) => match key_problem(&key) {
                Some(problem) => {
                    violations.push(FieldViolation::new("source.object_key", problem));
                    None
                }
                None => Some(SourceLocation::Object(key)),
            },
        };
        let output_prefix = req.output_prefix.trim_end_matches('/').to_string();
        if output_prefix.is_empty() {
            violations.push(FieldViolation::new("output_prefix", "must not be empty"));
        } else if let Some(problem) = key_problem(&output_prefix) {
            violations.push(FieldViolation::new("output_prefix", problem));
        }
        match (work, source) {
            (Some(work), source)
                if violations.is_empty() && (source.is_some() || !wants_source) =>
            {
                Ok(TaskRequest {
                    job_id: req.job_id,
                    task_id: req.task_id,
                    tenant_id: req.tenant_id,
                    account: req.account,
                    attempt: req.attempt,
                    work,
                    source,
                    output_prefix,
                    route: None,
                    matting: None,
                    usage: Default::default(),
                })
            }
            _ => Err(ProcessError::Invalid(violations)),
        }
    }
}

/// Longest output prefix accepted, leaving room under the storage key limit for `thumbs/<name>`.
const MAX_PREFIX_BYTES: usize = 400;

/// What is wrong with a storage key or prefix, checked before any work (storage checks again on use).
fn key_problem(key: &str) -> Option<String> {
    if key.len() > MAX_PREFIX_BYTES {
        return Some(format!("must be at most {MAX_PREFIX_BYTES} bytes"));
    }
    if key.starts_with('/') {
        return Some("must be relative (no leading `/`)".into());
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Some("must not contain empty, `.` or `..` segments".into());
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return Some("must not contain control characters or backslashes".into());
    }
    None
}

fn transform_recipe(
    t: &v1::TransformParams,
    violations: &mut Vec<FieldViolation>,
) -> Option<TransformRecipe> {
    let before = violations.len();
    let resize = t.resize.as_ref().and_then(|r| resize(r, violations));
    let crop = t.crop.as_ref().and_then(|c| {
        if c.width == 0 || c.height == 0 {
            violations.push(FieldViolation::new(
                "params.transform.crop",
                "width and height must be positive",
            ));
            None
        } else {
            Some(Crop {
                x: c.x,
                y: c.y,
                width: c.width,
                height: c.height,
            })
        }
    });
    let rotate = match t.rotate {
        0 => Rotation::None,
        90 => Rotation::R90,
        180 => Rotation::R180,
        270 => Rotation::R270,
        other => {
            violations.push(FieldViolation::new(
                "params.transform.rotate",
                format!("{other} is not one of 0, 90, 180, 270"),
            ));
            Rotation::None
        }
    };
    let format = match v1::ImageFormat::try_from(t.format) {
        Ok(v1::ImageFormat::Unspecified) => None,
        Ok(v1::ImageFormat::Jpeg) => Some(Format::Jpeg),
        Ok(v1::ImageFormat::Png) => Some(Format::Png),
        Ok(v1::ImageFormat::Webp) => Some(Format::Webp),
        Err(_) => {
            violations.push(FieldViolation::new(
                "params.transform.format",
                format!("unknown format {}", t.format),
            ));
            None
        }
    };
    let quality = match t.quality {
        0 => DEFAULT_QUALITY,
        q => match u8::try_from(q) {
            Ok(q) if q <= 100 => q,
            _ => {
                violations.push(FieldViolation::new(
                    "params.transform.quality",
                    "must be between 1 and 100 (0 means 85)",
                ));
                DEFAULT_QUALITY
            }
        },
    };
    if t.lossless && format == Some(Format::Jpeg) {
        violations.push(FieldViolation::new(
            "params.transform.lossless",
            "JPEG has no lossless mode; use format webp or png",
        ));
    }
    (violations.len() == before).then_some(TransformRecipe {
        resize,
        crop,
        rotate,
        flip_horizontal: t.flip_horizontal,
        flip_vertical: t.flip_vertical,
        auto_orient: t.auto_orient.unwrap_or(true),
        format,
        quality,
        lossless: t.lossless,
        strip_metadata: t.strip_metadata,
    })
}

fn resize(r: &v1::Resize, violations: &mut Vec<FieldViolation>) -> Option<Resize> {
    let fit = match v1::Fit::try_from(r.fit) {
        Ok(v1::Fit::Unspecified | v1::Fit::Contain) => Fit::Contain,
        Ok(v1::Fit::Cover) => Fit::Cover,
        Ok(v1::Fit::Fill) => Fit::Fill,
        Ok(v1::Fit::Inside) => Fit::Inside,
        Err(_) => {
            violations.push(FieldViolation::new(
                "params.transform.resize.fit",
                format!("unknown fit {}", r.fit),
            ));
            return None;
        }
    };
    if r.width == 0 && r.height == 0 {
        violations.push(FieldViolation::new(
            "params.transform.resize",
            "set width, height or both",
        ));
        return None;
    }
    Some(Resize {
        width: r.width,
        height: r.height,
        fit,
    })
}

fn clean_work(c: &v1::BasicCleanParams, violations: &mut Vec<FieldViolation>) -> Option<CleanWork> {
    let template = clean_template(c.template, violations);
    let method = match v1::MattingMethod::try_from(c.method) {
        Ok(v1::MattingMethod::Unspecified | v1::MattingMethod::Auto) => Some(MattingMethod::Auto),
        Ok(v1::MattingMethod::Model) => Some(MattingMethod::Model),
        Ok(v1::MattingMethod::Classical) => Some(MattingMethod::Classical),
        Err(_) => {
            violations.push(FieldViolation::new(
                "params.basic_clean.method",
                format!("unknown method {}; use auto, model or classical", c.method),
            ));
            None
        }
    };
    let min_confidence = c.min_confidence.unwrap_or(DEFAULT_MIN_CONFIDENCE);
    if !(0.0..=1.0).contains(&min_confidence) {
        violations.push(FieldViolation::new(
            "params.basic_clean.min_confidence",
            "must be between 0 and 1",
        ));
    }
    let model = Some(c.model.trim().to_string()).filter(|m| !m.is_empty());
    if model.is_some() && method == Some(MattingMethod::Classical) {
        violations.push(FieldViolation::new(
            "params.basic_clean.model",
            "the classical method uses no model; leave model empty or use method model",
        ));
    }
    if model.as_ref().is_some_and(|m| m.len() > 200) {
        violations.push(FieldViolation::new(
            "params.basic_clean.model",
            "at most 200 characters",
        ));
    }
    Some(CleanWork {
        template: template?,
        method: method?,
        model,
        min_confidence,
    })
}

fn clean_template(template: i32, violations: &mut Vec<FieldViolation>) -> Option<CleanTemplate> {
    match v1::CleanTemplate::try_from(template) {
        Ok(v1::CleanTemplate::Unspecified | v1::CleanTemplate::All) => Some(CleanTemplate::All),
        Ok(v1::CleanTemplate::Matting) => Some(CleanTemplate::Matting),
        Ok(v1::CleanTemplate::WhiteBg) => Some(CleanTemplate::WhiteBg),
        Ok(v1::CleanTemplate::Enhanced) => Some(CleanTemplate::Enhanced),
        Err(_) => {
            violations.push(FieldViolation::new(
                "params.basic_clean.template",
                format!("unknown template {template}"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: v1::job_params::Params) -> v1::ProcessRequest {
        v1::ProcessRequest {
            job_id: "j".into(),
            task_id: "t".into(),
            attempt: 1,
            params: Some(v1::JobParams {
                params: Some(params),
            }),
            source: Some(v1::SourceRef {
                source: Some(v1::source_ref::Source::Url(
                    "https://example.com/a.jpg".into(),
                )),
            }),
            output_prefix: "jobs/j/t/".into(),
            ..Default::default()
        }
    }

    fn violations(err: ProcessError) -> Vec<String> {
        match err {
            ProcessError::Invalid(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let task = TaskRequest::try_from(request(v1::job_params::Params::Transform(
            Default::default(),
        )))
        .expect("valid request");
        assert_eq!(task.output_prefix, "jobs/j/t");
        let Work::Transform(recipe) = task.work else {
            panic!("transform expected")
        };
        assert_eq!(recipe.quality, 85);
        assert!(recipe.auto_orient);
        assert!(recipe.format.is_none());
        assert!(matches!(recipe.rotate, Rotation::None));
    }

    #[test]
    fn bad_transform_fields_are_listed() {
        let params = v1::TransformParams {
            rotate: 45,
            quality: 101,
            format: 9,
            resize: Some(v1::Resize {
                width: 0,
                height: 0,
                fit: 1,
            }),
            ..Default::default()
        };
        let err = TaskRequest::try_from(request(v1::job_params::Params::Transform(params)))
            .expect_err("invalid");
        let fields = violations(err);
        for field in [
            "params.transform.rotate",
            "params.transform.quality",
            "params.transform.format",
            "params.transform.resize",
        ] {
            assert!(
                fields.iter().any(|f| f == field),
                "{field} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn lossless_reaches_the_recipe_and_is_refused_for_jpeg() {
        let transform = |format: v1::ImageFormat| {
            TaskRequest::try_from(request(v1::job_params::Params::Transform(
                v1::TransformParams {
                    format: format as i32,
                    quality: 60,
                    lossless: true,
                    ..Default::default()
                },
            )))
        };
        let task = transform(v1::ImageFormat::Webp).expect("valid");
        let Work::Transform(recipe) = task.work else {
            panic!("transform expected")
        };
        assert!(recipe.lossless);
        assert_eq!(recipe.quality, 60);
        let err = transform(v1::ImageFormat::Jpeg).expect_err("jpeg");
        assert_eq!(violations(err), ["params.transform.lossless"]);
    }

    #[test]
    fn missing_params_and_source_are_invalid() {
        let mut req = request(v1::job_params::Params::Transform(Default::default()));
        req.params = None;
        req.source = None;
        req.output_prefix.clear();
        let fields = violations(TaskRequest::try_from(req).expect_err("invalid"));
        assert_eq!(fields, ["params", "source", "output_prefix"]);
    }

    #[test]
    fn unsafe_keys_are_refused_up_front() {
        for prefix in ["/abs", "a//b", "a/../b", "./a", "a\\b"] {
            let mut req = request(v1::job_params::Params::Transform(Default::default()));
            req.output_prefix = prefix.into();
            let err = TaskRequest::try_from(req).expect_err(prefix);
            assert_eq!(violations(err), ["output_prefix"], "{prefix}");
        }
        let mut req = request(v1::job_params::Params::Transform(Default::default()));
        let key = v1::source_ref::Source::ObjectKey("../x".into());
        req.source = Some(v1::SourceRef { source: Some(key) });
        let err = TaskRequest::try_from(req).expect_err("bad key");
        assert_eq!(violations(err), ["source.object_key"]);
    }

    #[test]
    fn model_kinds_parse_and_generate_needs_no_source() {
        let mut req = request(v1::job_params::Params::Generate(v1::GenerateParams {
            prompt: "a shoe".into(),
            ..Default::default()
        }));
        req.source = None;
        let task = TaskRequest::try_from(req).expect("generate without a source");
        assert!(task.source.is_none());
        assert_eq!(task.work.kind(), "generate");
        assert_eq!(task.work.model_kind(), Some(ModelKind::Generate));

        let mut req = request(v1::job_params::Params::Edit(v1::EditParams {
            prompt: "blue".into(),
            ..Default::default()
        }));
        req.source = None;
        let err = TaskRequest::try_from(req).expect_err("edit needs a source");
        assert_eq!(violations(err), ["source"]);
    }

    #[test]
    fn basic_clean_reads_method_model_and_confidence_floor() {
        let clean = v1::BasicCleanParams {
            template: 1,
            model: " isnet-general-use ".into(),
            method: v1::MattingMethod::Model as i32,
            min_confidence: Some(0.7),
        };
        let task = TaskRequest::try_from(request(v1::job_params::Params::BasicClean(clean)))
            .expect("valid");
        let Work::BasicClean(work) = task.work else {
            panic!("basic_clean")
        };
        assert_eq!(work.method, MattingMethod::Model);
        assert_eq!(work.model.as_deref(), Some("isnet-general-use"));
        assert_eq!(work.min_confidence, 0.7);

        let defaults = v1::BasicCleanParams::default();
        let task = TaskRequest::try_from(request(v1::job_params::Params::BasicClean(defaults)))
            .expect("valid");
        let Work::BasicClean(work) = task.work else {
            panic!("basic_clean")
        };
        assert_eq!(
            (work.template, work.method, work.model, work.min_confidence),
            (
                CleanTemplate::All,
                MattingMethod::Auto,
                None,
                DEFAULT_MIN_CONFIDENCE
            )
        );

        for bad in [
            v1::BasicCleanParams {
                min_confidence: Some(1.5),
                ..Default::default()
            },
            v1::BasicCleanParams {
                method: 42,
                ..Default::default()
            },
            v1::BasicCleanParams {
                method: v1::MattingMethod::Classical as i32,
                model: "isnet".into(),
                ..Default::default()
            },
        ] {
            let err = TaskRequest::try_from(request(v1::job_params::Params::BasicClean(bad)))
                .expect_err("invalid");
            assert!(matches!(err, ProcessError::Invalid(_)), "{err}");
        }
    }
}
