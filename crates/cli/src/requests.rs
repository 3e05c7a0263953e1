//! Command-line arguments turned into API requests, checked before anything is sent.

use std::collections::HashMap;
use std::path::PathBuf;

use atelier_proto::v1 as pb;

use crate::args::{FitArg, FormatArg, KindArg, StateArg, SubmitArgs, TemplateArg, TransformArgs};
use crate::error::UsageError;

/// Where one source of `submit` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceArg {
    /// An http(s) address the processor downloads.
    Url(String),
    /// An earlier upload, written `upload:<id>`.
    Upload(String),
    /// A local file, uploaded before the job is submitted.
    File(PathBuf),
}

impl SourceArg {
    /// Classifies one SOURCES argument.
    pub fn parse(arg: &str) -> Result<Self, UsageError> {
        if let Some(id) = arg.strip_prefix("upload:") {
            let id = id.trim();
            if id.is_empty() {
                return Err(UsageError(format!(
                    "source `{arg}`: write the upload id after `upload:`"
                )));
            }
            return Ok(Self::Upload(id.to_string()));
        }
        let lower = arg.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Self::Url(arg.to_string()));
        }
        if let Some((scheme, _)) = arg.split_once("://") {
            return Err(UsageError(format!(
                "source `{arg}`: `{scheme}://` is not supported; use an http(s) URL, upload:<id> or a local file"
            )));
        }
        if arg.is_empty() {
            return Err(UsageError("a source is empty".into()));
        }
        Ok(Self::File(PathBuf::from(arg)))
    }

    /// The wire source; files must have been uploaded first.
    pub fn to_source(&self) -> Option<pb::Source> {
        match self {
            Self::Url(url) => Some(url_source(url)),
            Self::Upload(id) => Some(upload_source(id)),
            Self::File(_) => None,
        }
    }
}

/// A source by URL.
pub fn url_source(url: &str) -> pb::Source {
    pb::Source {
        source: Some(pb::source::Source::Url(url.to_string())),
    }
}

/// A source by upload id.
pub fn upload_source(id: &str) -> pb::Source {
    pb::Source {
        source: Some(pb::source::Source::UploadId(id.to_string())),
    }
}

/// The job parameters of `submit`, refusing options that belong to the other kind.
pub fn job_params(
    kind: KindArg,
    transform: &TransformArgs,
    template: Option<TemplateArg>,
) -> Result<pb::JobParams, UsageError> {
    let params = match kind {
        KindArg::Transform => {
            if template.is_some() {
                return Err(UsageError(
                    "--template is an option of basic-clean, not transform".into(),
                ));
            }
            pb::job_params::Params::Transform(transform_params(transform)?)
        }
        KindArg::BasicClean => {
            if transform.any() {
                return Err(UsageError(
                    "--width, --height, --fit, --crop, --format, --quality, --rotate and --flip-* are options of transform, not basic-clean"
                        .into(),
                ));
            }
            pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: clean_template(template.unwrap_or(TemplateArg::All)) as i32,
                model: String::new(),
            })
        }
    };
    Ok(pb::JobParams {
        params: Some(params),
    })
}

/// The TransformParams these options describe.
pub fn transform_params(args: &TransformArgs) -> Result<pb::TransformParams, UsageError> {
    let resize = match (args.width, args.height, args.fit) {
        (None, None, Some(_)) => {
            return Err(UsageError("--fit needs --width and/or --height".into()))
        }
        (None, None, None) => None,
        (width, height, fit) => Some(pb::Resize {
            width: width.unwrap_or(0),
            height: height.unwrap_or(0),
            fit: fit.map_or(pb::Fit::Unspecified, fit_of) as i32,
        }),
    };
    Ok(pb::TransformParams {
        resize,
        crop: args.crop.map(|[x, y, width, height]| pb::Crop {
            x,
            y,
            width,
            height,
        }),
        rotate: args.rotate.unwrap_or(0),
        flip_horizontal: args.flip_h,
        flip_vertical: args.flip_v,
        auto_orient: None,
        format: args.format.map_or(pb::ImageFormat::Unspecified, format_of) as i32,
        quality: args.quality.unwrap_or(0),
        strip_metadata: false,
    })
}

/// The SubmitJobRequest of `submit`, with the sources already resolved.
pub fn submit_request(
    args: &SubmitArgs,
    sources: Vec<pb::Source>,
) -> Result<pb::SubmitJobRequest, UsageError> {
    Ok(pb::SubmitJobRequest {
        params: Some(job_params(args.kind, &args.transform, args.template)?),
        sources,
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        callback_url: args.callback_url.clone().unwrap_or_default(),
        labels: labels(&args.labels)?,
        deadline: None,
    })
}

/// The labels as a map; a key given twice is a mistake worth saying.
pub fn labels(pairs: &[(String, String)]) -> Result<HashMap<String, String>, UsageError> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(UsageError(format!("label `{key}` is given twice")));
        }
    }
    Ok(map)
}

/// The wire kind.
pub fn kind_of(kind: KindArg) -> pb::JobKind {
    match kind {
        KindArg::Transform => pb::JobKind::Transform,
        KindArg::BasicClean => pb::JobKind::BasicClean,
    }
}

/// The wire state.
pub fn state_of(state: StateArg) -> pb::JobState {
    match state {
        StateArg::Queued => pb::JobState::Queued,
        StateArg::Running => pb::JobState::Running,
        StateArg::Succeeded => pb::JobState::Succeeded,
        StateArg::PartiallySucceeded => pb::JobState::PartiallySucceeded,
        StateArg::Failed => pb::JobState::Failed,
        StateArg::Cancelled => pb::JobState::Cancelled,
    }
}

fn fit_of(fit: FitArg) -> pb::Fit {
    match fit {
        FitArg::Contain => pb::Fit::Contain,
        FitArg::Cover => pb::Fit::Cover,
        FitArg::Fill => pb::Fit::Fill,
        FitArg::Inside => pb::Fit::Inside,
    }
}

fn format_of(format: FormatArg) -> pb::ImageFormat {
    match format {
        FormatArg::Jpeg => pb::ImageFormat::Jpeg,
        FormatArg::Png => pb::ImageFormat::Png,
        FormatArg::Webp => pb::ImageFormat::Webp,
    }
}

fn clean_template(template: TemplateArg) -> pb::CleanTemplate {
    match template {
        TemplateArg::All => pb::CleanTemplate::All,
        TemplateArg::Matting => pb::CleanTemplate::Matting,
        TemplateArg::WhiteBg => pb::CleanTemplate::WhiteBg,
        TemplateArg::Enhanced => pb::CleanTemplate::Enhanced,
    }
}

/// The content type of an upload, from the file name; empty lets the server sniff it.
pub fn content_type_for(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn submit_args(args: &[&str]) -> SubmitArgs {
        let mut argv = vec!["atelier", "submit"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Submit(submit),
                ..
            }) => submit,
            Ok(other) => panic!("not a submit: {other:?}"),
            Err(e) => panic!("{args:?} does not parse: {e}"),
        }
    }

    fn request(args: &[&str]) -> Result<pb::SubmitJobRequest, UsageError> {
        let args = submit_args(args);
        submit_request(&args, vec![url_source("https://example.com/a.jpg")])
    }

    #[test]
    fn transform_options_build_transform_params() {
        let req = request(&[
            "transform",
            "x.jpg",
            "--width",
            "800",
            "--height",
            "600",
            "--fit",
            "cover",
            "--format",
            "webp",
            "--quality",
            "70",
            "--rotate",
            "90",
            "--flip-h",
            "--crop",
            "1,2,300,400",
        ])
        .expect("valid");
        let Some(pb::job_params::Params::Transform(t)) = req.params.and_then(|p| p.params) else {
            panic!("not a transform")
        };
        assert_eq!(
            t.resize,
            Some(pb::Resize {
                width: 800,
                height: 600,
                fit: pb::Fit::Cover as i32
            })
        );
        assert_eq!(t.format, pb::ImageFormat::Webp as i32);
        assert_eq!(t.quality, 70);
        assert_eq!(t.rotate, 90);
        assert!(t.flip_horizontal);
        assert!(!t.flip_vertical);
        assert_eq!(
            t.crop,
            Some(pb::Crop {
                x: 1,
                y: 2,
                width: 300,
                height: 400
            })
        );
        assert_eq!(t.auto_orient, None);
    }

    #[test]
    fn width_alone_leaves_height_and_fit_to_the_server() {
        let req =
            request(&["transform", "x.jpg", "--width", "800", "--format", "png"]).expect("valid");
        let Some(pb::job_params::Params::Transform(t)) = req.params.and_then(|p| p.params) else {
            panic!("not a transform")
        };
        assert_eq!(
            t.resize,
            Some(pb::Resize {
                width: 800,
                height: 0,
                fit: pb::Fit::Unspecified as i32
            })
        );
        assert_eq!(t.format, pb::ImageFormat::Png as i32);
        assert_eq!(t.quality, 0);
        let bare = request(&["transform", "x.jpg"]).expect("valid");
        let Some(pb::job_params::Params::Transform(t)) = bare.params.and_then(|p| p.params) else {
            panic!("not a transform")
        };
        assert_eq!(t.resize, None);
        assert_eq!(t.format, pb::ImageFormat::Unspecified as i32);
    }

    #[test]
    fn basic_clean_takes_a_template_and_defaults_to_all() {
        let req = request(&["basic-clean", "x.jpg", "--template", "white-bg"]).expect("valid");
        assert_eq!(
            req.params.and_then(|p| p.params),
            Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: pb::CleanTemplate::WhiteBg as i32,
                model: String::new()
            }))
        );
        let req = request(&["basic_clean", "x.jpg"]).expect("valid");
        assert_eq!(
            req.params.and_then(|p| p.params),
            Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: pb::CleanTemplate::All as i32,
                model: String::new()
            }))
        );
    }

    #[test]
    fn options_of_the_other_kind_are_refused() {
        assert!(request(&["basic-clean", "x.jpg", "--width", "10"]).is_err());
        assert!(request(&["basic-clean", "x.jpg", "--flip-v"]).is_err());
        assert!(request(&["transform", "x.jpg", "--template", "all"]).is_err());
        assert!(request(&["transform", "x.jpg", "--fit", "cover"]).is_err());
    }

    #[test]
    fn common_options_are_carried() {
        let req = request(&[
            "transform",
            "x.jpg",
            "--idempotency-key",
            "k1",
            "--label",
            "team=shoes",
            "--label",
            "run=7",
            "--callback-url",
            "https://hooks.example.com/a",
        ])
        .expect("valid");
        assert_eq!(req.idempotency_key, "k1");
        assert_eq!(req.callback_url, "https://hooks.example.com/a");
        assert_eq!(req.labels.get("team").map(String::as_str), Some("shoes"));
        assert_eq!(req.labels.get("run").map(String::as_str), Some("7"));
        assert!(request(&["transform", "x.jpg", "--label", "a=1", "--label", "a=2"]).is_err());
    }

    #[test]
    fn sources_are_classified() {
        assert_eq!(
            SourceArg::parse("upload:abc-123"),
            Ok(SourceArg::Upload("abc-123".into()))
        );
        assert!(SourceArg::parse("upload:").is_err());
        assert_eq!(
            SourceArg::parse("https://x.test/a.jpg"),
            Ok(SourceArg::Url("https://x.test/a.jpg".into()))
        );
        assert_eq!(
            SourceArg::parse("HTTP://x.test/a.jpg"),
            Ok(SourceArg::Url("HTTP://x.test/a.jpg".into()))
        );
        assert_eq!(
            SourceArg::parse("photos/a.jpg"),
            Ok(SourceArg::File("photos/a.jpg".into()))
        );
        assert_eq!(
            SourceArg::parse("/tmp/upload.jpg"),
            Ok(SourceArg::File("/tmp/upload.jpg".into()))
        );
        assert!(SourceArg::parse("ftp://x.test/a.jpg").is_err());
        assert!(SourceArg::parse("").is_err());
        assert_eq!(
            SourceArg::parse("upload:u1")
                .ok()
                .and_then(|s| s.to_source()),
            Some(upload_source("u1"))
        );
        assert_eq!(
            SourceArg::parse("a.jpg").ok().and_then(|s| s.to_source()),
            None
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type_for("a/B.JPG".as_ref()), "image/jpeg");
        assert_eq!(content_type_for("b.webp".as_ref()), "image/webp");
        assert_eq!(content_type_for("c.png".as_ref()), "image/png");
        assert_eq!(content_type_for("d".as_ref()), "");
    }
}
