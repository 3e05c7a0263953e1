//! Command-line arguments turned into API requests, checked before anything is sent.

use std::collections::HashMap;
use std::path::PathBuf;

use atelier_proto::v1 as pb;

use atelier_types::{CleanTemplate, Kind};

use crate::args::{kind_name, CleanArgs, ModelArgs, SubmitArgs, TransformArgs};
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

/// The kind-specific options given on the command line, each with the kinds it belongs to.
fn given_options(
    transform: &TransformArgs,
    clean: &CleanArgs,
    model: &ModelArgs,
) -> Vec<(&'static str, &'static [Kind])> {
    use Kind::{BasicClean, Edit, Generate, PoseSet, Transform};
    const TRANSFORM: &[Kind] = &[Transform];
    const SIZED: &[Kind] = &[Transform, Generate];
    const PROMPTED: &[Kind] = &[Edit, Generate];
    const MODELLED: &[Kind] = &[BasicClean, Edit, Generate, PoseSet];
    let options: [(&'static str, &'static [Kind], bool); 24] = [
        ("--width", SIZED, transform.width.is_some()),
        ("--height", SIZED, transform.height.is_some()),
        ("--fit", TRANSFORM, transform.fit.is_some()),
        ("--crop", TRANSFORM, transform.crop.is_some()),
        ("--format", TRANSFORM, transform.format.is_some()),
        ("--quality", TRANSFORM, transform.quality.is_some()),
        ("--lossless", TRANSFORM, transform.lossless),
        ("--rotate", TRANSFORM, transform.rotate.is_some()),
        ("--flip-h", TRANSFORM, transform.flip_h),
        ("--flip-v", TRANSFORM, transform.flip_v),
        ("--template", &[BasicClean], clean.template.is_some()),
        ("--method", &[BasicClean], clean.method.is_some()),
        (
            "--min-confidence",
            &[BasicClean],
            clean.min_confidence.is_some(),
        ),
        ("--prompt", PROMPTED, model.prompt.is_some()),
        (
            "--negative-prompt",
            PROMPTED,
            model.negative_prompt.is_some(),
        ),
        ("--model", MODELLED, model.model.is_some()),
        ("--seed", PROMPTED, model.seed.is_some()),
        ("--size", &[Edit], model.size.is_some()),
        ("--num-images", PROMPTED, model.num_images.is_some()),
        ("--steps", &[Generate], model.steps.is_some()),
        (
            "--guidance-scale",
            &[Generate],
            model.guidance_scale.is_some(),
        ),
        ("--scene", &[PoseSet], model.scene.is_some()),
        ("--category", &[PoseSet], model.category.is_some()),
        ("--description", &[PoseSet], model.description.is_some()),
    ];
    options
        .into_iter()
        .filter(|(_, _, given)| *given)
        .map(|(flag, kinds, _)| (flag, kinds))
        .collect()
}

/// Refuses options that belong to other kinds: `--template is an option of basic-clean, not
/// transform`.
fn refuse_foreign_options(
    kind: Kind,
    transform: &TransformArgs,
    clean: &CleanArgs,
    model: &ModelArgs,
) -> Result<(), UsageError> {
    let foreign: Vec<String> = given_options(transform, clean, model)
        .into_iter()
        .filter(|(_, kinds)| !kinds.contains(&kind))
        .map(|(flag, kinds)| {
            let owners: Vec<String> = Kind::ALL
                .iter()
                .filter(|k| kinds.contains(k))
                .map(|k| kind_name(*k))
                .collect();
            let owners = match owners.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => owners.concat(),
            };
            format!("{flag} is an option of {owners}")
        })
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "{}, not {}",
        foreign.join("; "),
        kind_name(kind)
    )))
}

/// A prompt the kind needs: given and not blank.
fn required_prompt(kind: Kind, prompt: Option<&String>) -> Result<String, UsageError> {
    match prompt {
        Some(p) if !p.trim().is_empty() => Ok(p.clone()),
        _ => Err(UsageError(format!(
            "{} needs --prompt: describe the image to make",
            kind_name(kind)
        ))),
    }
}

/// The job parameters of `submit`, refusing options that belong to another kind.
pub fn job_params(
    kind: Kind,
    transform: &TransformArgs,
    clean: &CleanArgs,
    model: &ModelArgs,
) -> Result<pb::JobParams, UsageError> {
    refuse_foreign_options(kind, transform, clean, model)?;
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let params = match kind {
        Kind::Transform => pb::job_params::Params::Transform(transform_params(transform)?),
        Kind::BasicClean => pb::job_params::Params::BasicClean(pb::BasicCleanParams {
            template: clean.template.unwrap_or(CleanTemplate::All).number(),
            model: text(&model.model),
            method: clean.method.map_or(0, |m| m.number()),
            min_confidence: clean.min_confidence,
        }),
        Kind::Edit => pb::job_params::Params::Edit(pb::EditParams {
            prompt: required_prompt(kind, model.prompt.as_ref())?,
            negative_prompt: text(&model.negative_prompt),
            model: text(&model.model),
            seed: model.seed,
            size: model
                .size
                .map(|(w, h)| format!("{w}x{h}"))
                .unwrap_or_default(),
            num_images: model.num_images.unwrap_or(1),
        }),
        Kind::Generate => {
            let prompt = required_prompt(kind, model.prompt.as_ref())?;
            let (width, height) = match (transform.width, transform.height) {
                (Some(w), Some(h)) => (w, h),
                (None, None) => (0, 0),
                _ => {
                    return Err(UsageError(
                        "generate takes --width and --height together (or neither, for the model's default size)"
                            .into(),
                    ))
                }
            };
            pb::job_params::Params::Generate(pb::GenerateParams {
                prompt,
                negative_prompt: text(&model.negative_prompt),
                model: text(&model.model),
                width,
                height,
                num_images: model.num_images.unwrap_or(1),
                steps: model.steps.unwrap_or(0),
                guidance_scale: model.guidance_scale.unwrap_or(0.0),
                seed: model.seed,
            })
        }
        Kind::PoseSet => {
            let category = match &model.category {
                Some(c) if !c.trim().is_empty() => c.clone(),
                _ => return Err(UsageError(
                    "pose-set needs --category: the product category, e.g. shoes, dress, hoodie"
                        .into(),
                )),
            };
            pb::job_params::Params::PoseSet(pb::PoseSetParams {
                scene: model.scene.map_or(0, |s| s.number()),
                category,
                description: text(&model.description),
                model: text(&model.model),
            })
        }
    };
    Ok(pb::JobParams {
        params: Some(params),
    })
}

/// Every kind but generate needs sources; generate takes none.
pub fn check_sources(kind: Kind, sources: &[String]) -> Result<(), UsageError> {
    match (kind.takes_sources(), sources.is_empty()) {
        (true, true) => Err(UsageError(format!(
            "{} needs at least one source: an http(s) URL, upload:<id> or a local file",
            kind_name(kind)
        ))),
        (false, false) => Err(UsageError(format!(
            "{} takes no sources; describe the image with --prompt",
            kind_name(kind)
        ))),
        _ => Ok(()),
    }
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
            fit: fit.map_or(0, |f| f.number()),
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
        format: args.format.map_or(0, |f| f.number()),
        quality: args.quality.unwrap_or(0),
        strip_metadata: false,
        lossless: args.lossless,
    })
}

/// The SubmitJobRequest of `submit`, with the sources already resolved.
pub fn submit_request(
    args: &SubmitArgs,
    sources: Vec<pb::Source>,
) -> Result<pb::SubmitJobRequest, UsageError> {
    check_sources(args.kind, &args.sources)?;
    Ok(pb::SubmitJobRequest {
        params: Some(job_params(
            args.kind,
            &args.transform,
            &args.clean,
            &args.model,
        )?),
        sources,
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        callback_url: args.callback_url.clone().unwrap_or_default(),
        labels: labels(&args.labels)?,
        deadline: None,
        family: String::new(),
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
            }) => *submit,
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
        assert!(!t.lossless, "lossy unless asked");
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
    fn lossless_is_a_transform_option() {
        let req =
            request(&["transform", "x.png", "--format", "webp", "--lossless"]).expect("valid");
        let Some(pb::job_params::Params::Transform(t)) = req.params.and_then(|p| p.params) else {
            panic!("not a transform")
        };
        assert!(t.lossless);
        assert_eq!(t.format, pb::ImageFormat::Webp as i32);
        let err = request(&["basic-clean", "x.png", "--lossless"]).expect_err("foreign option");
        assert!(err.to_string().contains("--lossless"), "{err}");
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
                model: String::new(),
                ..Default::default()
            }))
        );
        let req = request(&["basic_clean", "x.jpg"]).expect("valid");
        assert_eq!(
            req.params.and_then(|p| p.params),
            Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: pb::CleanTemplate::All as i32,
                model: String::new(),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn basic_clean_takes_a_method_and_a_minimum_confidence() {
        let req = request(&[
            "basic-clean",
            "x.jpg",
            "--method",
            "model",
            "--min-confidence",
            "0.8",
            "--model",
            "isnet",
        ])
        .expect("valid");
        assert_eq!(
            req.params.and_then(|p| p.params),
            Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: pb::CleanTemplate::All as i32,
                model: "isnet".into(),
                method: pb::MattingMethod::Model as i32,
                min_confidence: Some(0.8),
            }))
        );
        for bad in [["--min-confidence", "1.5"], ["--method", "magic"]] {
            let argv = ["atelier", "submit", "basic-clean", "x.jpg", bad[0], bad[1]];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} parsed");
        }
        assert!(request(&["transform", "x.jpg", "--method", "classical"]).is_err());
    }

    #[test]
    fn options_of_the_other_kind_are_refused() {
        assert!(request(&["basic-clean", "x.jpg", "--width", "10"]).is_err());
        assert!(request(&["basic-clean", "x.jpg", "--flip-v"]).is_err());
        assert!(request(&["transform", "x.jpg", "--template", "all"]).is_err());
        assert!(request(&["transform", "x.jpg", "--fit", "cover"]).is_err());
    }

    fn params(args: &[&str]) -> pb::job_params::Params {
        let args = submit_args(args);
        match submit_request(&args, Vec::new()) {
            Ok(req) => req.params.and_then(|p| p.params).expect("params are set"),
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn refusal(args: &[&str]) -> String {
        let args = submit_args(args);
        match submit_request(&args, Vec::new()) {
            Ok(req) => panic!("accepted: {req:?}"),
            Err(UsageError(message)) => message,
        }
    }

    #[test]
    fn edit_takes_a_prompt_and_builds_edit_params() {
        assert_eq!(
            params(&[
                "edit",
                "x.jpg",
                "y.png",
                "--prompt",
                "put it on a beach",
                "--negative-prompt",
                "people",
                "--model",
                "test-image-1",
                "--seed",
                "42",
                "--size",
                "1024x768",
                "--num-images",
                "3",
            ]),
            pb::job_params::Params::Edit(pb::EditParams {
                prompt: "put it on a beach".into(),
                negative_prompt: "people".into(),
                model: "test-image-1".into(),
                seed: Some(42),
                size: "1024x768".into(),
                num_images: 3,
            })
        );
        assert_eq!(
            params(&["edit", "x.jpg", "--prompt", "brighter"]),
            pb::job_params::Params::Edit(pb::EditParams {
                prompt: "brighter".into(),
                num_images: 1,
                ..Default::default()
            })
        );
    }

    #[test]
    fn generate_takes_no_sources_and_reuses_width_and_height() {
        assert_eq!(
            params(&[
                "generate",
                "--prompt",
                "a red sneaker on white",
                "--negative-prompt",
                "text",
                "--model",
                "test-image-1",
                "--width",
                "512",
                "--height",
                "768",
                "--num-images",
                "2",
                "--steps",
                "30",
                "--guidance-scale",
                "7.5",
                "--seed",
                "7",
            ]),
            pb::job_params::Params::Generate(pb::GenerateParams {
                prompt: "a red sneaker on white".into(),
                negative_prompt: "text".into(),
                model: "test-image-1".into(),
                width: 512,
                height: 768,
                num_images: 2,
                steps: 30,
                guidance_scale: 7.5,
                seed: Some(7),
            })
        );
        assert_eq!(
            params(&["generate", "--prompt", "a hat"]),
            pb::job_params::Params::Generate(pb::GenerateParams {
                prompt: "a hat".into(),
                num_images: 1,
                ..Default::default()
            })
        );
        let args = submit_args(&["generate", "--prompt", "a hat", "--label", "run=1"]);
        let req = submit_request(&args, Vec::new()).expect("valid");
        assert!(req.sources.is_empty());
        assert_eq!(req.labels.get("run").map(String::as_str), Some("1"));
        assert_eq!(Kind::Generate.to_proto(), pb::JobKind::Generate);
    }

    #[test]
    fn pose_set_takes_a_scene_and_a_category() {
        assert_eq!(
            params(&[
                "pose_set",
                "hoodie.jpg",
                "--scene",
                "indoor",
                "--category",
                "hoodie",
                "--description",
                "grey cotton hoodie",
                "--model",
                "test-image-1",
            ]),
            pb::job_params::Params::PoseSet(pb::PoseSetParams {
                scene: pb::Scene::Indoor as i32,
                category: "hoodie".into(),
                description: "grey cotton hoodie".into(),
                model: "test-image-1".into(),
            })
        );
        assert_eq!(
            params(&["pose-set", "shoe.jpg", "--category", "shoes"]),
            pb::job_params::Params::PoseSet(pb::PoseSetParams {
                scene: pb::Scene::Unspecified as i32,
                category: "shoes".into(),
                ..Default::default()
            })
        );
        assert_eq!(Kind::PoseSet.to_proto(), pb::JobKind::PoseSet);
        assert_eq!(Kind::Edit.to_proto(), pb::JobKind::Edit);
    }

    #[test]
    fn basic_clean_may_name_a_matting_model() {
        assert_eq!(
            params(&["basic-clean", "x.jpg", "--model", "matte-1"]),
            pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: pb::CleanTemplate::All as i32,
                model: "matte-1".into(),
                ..Default::default()
            })
        );
    }

    #[test]
    fn sources_are_required_except_for_generate_which_refuses_them() {
        for kind in ["transform", "basic-clean"] {
            let message = refusal(&[kind]);
            assert!(message.contains("needs at least one source"), "{message}");
        }
        let message = refusal(&["edit", "--prompt", "p"]);
        assert_eq!(
            message,
            "edit needs at least one source: an http(s) URL, upload:<id> or a local file"
        );
        let message = refusal(&["pose-set", "--category", "shoes"]);
        assert!(
            message.starts_with("pose-set needs at least one source"),
            "{message}"
        );
        let message = refusal(&["generate", "x.jpg", "--prompt", "p"]);
        assert_eq!(
            message,
            "generate takes no sources; describe the image with --prompt"
        );
    }

    #[test]
    fn model_kinds_need_their_required_options() {
        assert_eq!(
            refusal(&["generate"]),
            "generate needs --prompt: describe the image to make"
        );
        assert_eq!(
            refusal(&["edit", "x.jpg", "--prompt", "  "]),
            "edit needs --prompt: describe the image to make"
        );
        assert!(refusal(&["pose-set", "x.jpg"]).starts_with("pose-set needs --category"));
        assert!(refusal(&["generate", "--prompt", "p", "--width", "512"])
            .starts_with("generate takes --width and --height together"));
    }

    #[test]
    fn model_options_of_another_kind_are_refused() {
        assert_eq!(
            refusal(&["transform", "x.jpg", "--prompt", "p"]),
            "--prompt is an option of edit and generate, not transform"
        );
        assert_eq!(
            refusal(&["basic-clean", "x.jpg", "--width", "10", "--scene", "street"]),
            "--width is an option of transform and generate; --scene is an option of pose-set, not basic-clean"
        );
        assert_eq!(
            refusal(&["edit", "x.jpg", "--prompt", "p", "--steps", "20"]),
            "--steps is an option of generate, not edit"
        );
        assert_eq!(
            refusal(&["edit", "x.jpg", "--prompt", "p", "--width", "512"]),
            "--width is an option of transform and generate, not edit"
        );
        assert_eq!(
            refusal(&["generate", "--prompt", "p", "--size", "512x512"]),
            "--size is an option of edit, not generate"
        );
        assert_eq!(
            refusal(&["generate", "--prompt", "p", "--fit", "cover", "--format", "png"]),
            "--fit is an option of transform; --format is an option of transform, not generate"
        );
        assert_eq!(
            refusal(&["pose-set", "x.jpg", "--category", "c", "--prompt", "p", "--seed", "1"]),
            "--prompt is an option of edit and generate; --seed is an option of edit and generate, not pose-set"
        );
        assert_eq!(
            refusal(&["generate", "--prompt", "p", "--category", "shoes"]),
            "--category is an option of pose-set, not generate"
        );
        assert_eq!(
            refusal(&["transform", "x.jpg", "--model", "m"]),
            "--model is an option of basic-clean, edit, generate and pose-set, not transform"
        );
        assert_eq!(
            refusal(&["pose-set", "x.jpg", "--category", "c", "--template", "all"]),
            "--template is an option of basic-clean, not pose-set"
        );
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
