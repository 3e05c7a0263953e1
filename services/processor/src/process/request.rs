//! The wire request turned into a validated task, once, at the edge.

use atelier_codes::FieldViolation;
use atelier_engine::{CleanTemplate, Crop, Fit, Format, Resize, Rotation, TransformRecipe};
use atelier_proto::v1;

use super::ProcessError;

/// Quality used when the request says 0.
pub const DEFAULT_QUALITY: u8 = 85;

/// One validated task attempt.
#[derive(Debug)]
pub struct TaskRequest {
    /// Job the task belongs to (for logs).
    pub job_id: String,
    /// The task (for logs).
    pub task_id: String,
    /// Attempt number (for logs).
    pub attempt: u32,
    /// What to make.
    pub work: Work,
    /// Where the source is.
    pub source: SourceLocation,
    /// Outputs go under this prefix, without a trailing `/`.
    pub output_prefix: String,
}

/// What the engine runs.
#[derive(Debug)]
pub enum Work {
    /// Resize, crop, rotate, flip, re-encode.
    Transform(TransformRecipe),
    /// Local background removal and enhancement.
    BasicClean(CleanTemplate),
}

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
                if !c.model.trim().is_empty() {
                    return Err(no_model("basic_clean with a model"));
                }
                clean_template(c.template, &mut violations).map(Work::BasicClean)
            }
            Some(v1::job_params::Params::Edit(_)) => return Err(no_model("edit")),
            Some(v1::job_params::Params::Generate(_)) => return Err(no_model("generate")),
            Some(v1::job_params::Params::PoseSet(_)) => return Err(no_model("pose_set")),
        };
        let source = match req.source.and_then(|s| s.source) {
            None => {
                violations.push(FieldViolation::new("source", "set a url or an object_key"));
                None
            }
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
            (Some(work), Some(source)) if violations.is_empty() => Ok(TaskRequest {
                job_id: req.job_id,
                task_id: req.task_id,
                attempt: req.attempt,
                work,
                source,
                output_prefix,
            }),
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

fn no_model(what: &str) -> ProcessError {
    ProcessError::ModelUnavailable(format!(
        "{what} needs a model provider, and no model provider is configured"
    ))
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
    (violations.len() == before).then_some(TransformRecipe {
        resize,
        crop,
        rotate,
        flip_horizontal: t.flip_horizontal,
        flip_vertical: t.flip_vertical,
        auto_orient: t.auto_orient.unwrap_or(true),
        format,
        quality,
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
    fn model_kinds_are_unavailable() {
        let err = TaskRequest::try_from(request(v1::job_params::Params::Generate(
            Default::default(),
        )))
        .expect_err("no model");
        assert!(matches!(err, ProcessError::ModelUnavailable(_)));
        let clean = v1::BasicCleanParams {
            template: 1,
            model: "rembg".into(),
        };
        let err = TaskRequest::try_from(request(v1::job_params::Params::BasicClean(clean)))
            .expect_err("no model");
        assert!(matches!(err, ProcessError::ModelUnavailable(_)));
    }
}
