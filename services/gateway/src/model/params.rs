//! The parameters of each job kind. One struct per kind serves both directions: a request's `params`
//! is read as the struct of its `kind` (unknown fields refused), and a job's `params` is written from it.

use atelier_proto::v1 as pb;
use pb::job_params::Params;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

use super::enums::{CleanTemplate, Fit, ImageFormat, JobKind, MattingMethod, Scene};
use crate::error::ApiError;

/// `transform`: applied in this order: auto-orient, crop, rotate, flip, resize, encode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TransformParams {
    pub resize: Option<Resize>,
    pub crop: Option<Crop>,
    /// Clockwise degrees: 0, 90, 180 or 270.
    pub rotate: u32,
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    /// Apply the EXIF orientation first; defaults to true.
    pub auto_orient: Option<bool>,
    /// Output format; null keeps the source format.
    pub format: Option<ImageFormat>,
    /// 1..=100 for JPEG and WebP; null means 85. WebP is lossy at this quality, except that 100
    /// means lossless WebP.
    pub quality: Option<u32>,
    pub strip_metadata: bool,
    /// Lossless WebP whatever the quality (PNG always is). JPEG has no lossless mode: `true` with a
    /// JPEG output, asked for or kept from a JPEG source, is refused with 1003.
    pub lossless: bool,
}

/// A resize box; a zero or missing side follows the aspect ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resize {
    pub width: u32,
    pub height: u32,
    pub fit: Option<Fit>,
}

/// A crop rectangle in source pixels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// `basic_clean`: matting.png, white-bg.jpg and/or enhanced.jpg.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BasicCleanParams {
    /// Defaults to `all`.
    pub template: Option<CleanTemplate>,
    /// A matting model by the name `/v1/models` lists; null for the processor's default.
    pub model: Option<String>,
    /// How the subject is found; defaults to `auto`.
    pub method: Option<MattingMethod>,
    /// A cut-out rated below this (0..1) fails with 3010 and is refunded; defaults to 0.5.
    pub min_confidence: Option<f32>,
}

/// `edit`: an image and a prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditParams {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// `WIDTHxHEIGHT`; null for the provider's default.
    #[serde(default)]
    pub size: Option<String>,
    /// 1..=4.
    #[serde(default)]
    pub num_images: Option<u32>,
}

/// `generate`: images from a prompt alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// 1..=4.
    #[serde(default)]
    pub num_images: Option<u32>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub guidance_scale: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
}

/// `pose_set`: twelve model shots of a product.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PoseSetParams {
    pub scene: Option<Scene>,
    /// For example `shoes`, `dress`, `hoodie`.
    pub category: Option<String>,
    pub description: Option<String>,
    pub model: Option<String>,
}

/// The OpenAPI schema of a `params` object: any one kind's parameters.
pub fn params_schema() -> RefOr<Schema> {
    let mut any = AnyOfBuilder::new();
    for name in [
        "TransformParams",
        "BasicCleanParams",
        "EditParams",
        "GenerateParams",
        "PoseSetParams",
    ] {
        any = any.item(Ref::from_schema_name(name));
    }
    RefOr::T(Schema::AnyOf(
        any.description(Some(
            "The parameters of the job's kind: one of the *Params schemas.",
        ))
        .build(),
    ))
}

fn text(value: Option<String>) -> String {
    value.unwrap_or_default()
}

fn some_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn some_number(value: u32) -> Option<u32> {
    (value != 0).then_some(value)
}

/// The protobuf parameters of `kind`, read from the request's `params` (absent means `{}`).
pub fn to_pb(kind: JobKind, params: Option<serde_json::Value>) -> Result<pb::JobParams, ApiError> {
    let value = match params {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v) => v,
    };
    fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
        serde_json::from_value(value).map_err(|e| ApiError::field("params", e.to_string()))
    }
    let params = match kind {
        JobKind::Transform => {
            let p: TransformParams = read(value)?;
            Params::Transform(pb::TransformParams {
                resize: p.resize.map(|r| pb::Resize {
                    width: r.width,
                    height: r.height,
                    fit: r.fit.map_or(0, Fit::number),
                }),
                crop: p.crop.map(|c| pb::Crop {
                    x: c.x,
                    y: c.y,
                    width: c.width,
                    height: c.height,
                }),
                rotate: p.rotate,
                flip_horizontal: p.flip_horizontal,
                flip_vertical: p.flip_vertical,
                auto_orient: p.auto_orient,
                format: p.format.map_or(0, ImageFormat::number),
                quality: p.quality.unwrap_or(0),
                strip_metadata: p.strip_metadata,
                lossless: p.lossless,
            })
        }
        JobKind::BasicClean => {
            let p: BasicCleanParams = read(value)?;
            Params::BasicClean(pb::BasicCleanParams {
                template: p.template.map_or(0, CleanTemplate::number),
                model: text(p.model),
                method: p.method.map_or(0, MattingMethod::number),
                min_confidence: p.min_confidence,
            })
        }
        JobKind::Edit => {
            let p: EditParams = read(value)?;
            Params::Edit(pb::EditParams {
                prompt: p.prompt,
                negative_prompt: text(p.negative_prompt),
                model: text(p.model),
                seed: p.seed,
                size: text(p.size),
                num_images: p.num_images.unwrap_or(0),
            })
        }
        JobKind::Generate => {
            let p: GenerateParams = read(value)?;
            Params::Generate(pb::GenerateParams {
                prompt: p.prompt,
                negative_prompt: text(p.negative_prompt),
                model: text(p.model),
                width: p.width.unwrap_or(0),
                height: p.height.unwrap_or(0),
                num_images: p.num_images.unwrap_or(0),
                steps: p.steps.unwrap_or(0),
                guidance_scale: p.guidance_scale.unwrap_or(0.0),
                seed: p.seed,
            })
        }
        JobKind::PoseSet => {
            let p: PoseSetParams = read(value)?;
            Params::PoseSet(pb::PoseSetParams {
                scene: p.scene.map_or(0, Scene::number),
                category: text(p.category),
                description: text(p.description),
                model: text(p.model),
            })
        }
    };
    Ok(pb::JobParams {
        params: Some(params),
    })
}

/// The JSON parameters of a job as the orchestrator stored them.
pub fn from_pb(params: Option<&pb::JobParams>) -> serde_json::Value {
    let value = match params.and_then(|p| p.params.as_ref()) {
        None => return serde_json::Value::Object(Default::default()),
        Some(Params::Transform(p)) => serde_json::to_value(TransformParams {
            resize: p.resize.as_ref().map(|r| Resize {
                width: r.width,
                height: r.height,
                fit: Fit::from_number(r.fit),
            }),
            crop: p.crop.as_ref().map(|c| Crop {
                x: c.x,
                y: c.y,
                width: c.width,
                height: c.height,
            }),
            rotate: p.rotate,
            flip_horizontal: p.flip_horizontal,
            flip_vertical: p.flip_vertical,
            auto_orient: p.auto_orient,
            format: ImageFormat::from_number(p.format),
            quality: some_number(p.quality),
            strip_metadata: p.strip_metadata,
            lossless: p.lossless,
        }),
        Some(Params::BasicClean(p)) => serde_json::to_value(BasicCleanParams {
            template: CleanTemplate::from_number(p.template),
            model: some_text(&p.model),
            method: MattingMethod::from_number(p.method),
            min_confidence: p.min_confidence,
        }),
        Some(Params::Edit(p)) => serde_json::to_value(EditParams {
            prompt: p.prompt.clone(),
            negative_prompt: some_text(&p.negative_prompt),
            model: some_text(&p.model),
            seed: p.seed,
            size: some_text(&p.size),
            num_images: some_number(p.num_images),
        }),
        Some(Params::Generate(p)) => serde_json::to_value(GenerateParams {
            prompt: p.prompt.clone(),
            negative_prompt: some_text(&p.negative_prompt),
            model: some_text(&p.model),
            width: some_number(p.width),
            height: some_number(p.height),
            num_images: some_number(p.num_images),
            steps: some_number(p.steps),
            guidance_scale: (p.guidance_scale != 0.0 && p.guidance_scale.is_finite())
                .then_some(p.guidance_scale),
            seed: p.seed,
        }),
        Some(Params::PoseSet(p)) => serde_json::to_value(PoseSetParams {
            scene: Scene::from_number(p.scene),
            category: some_text(&p.category),
            description: some_text(&p.description),
            model: some_text(&p.model),
        }),
    };
    value.unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_round_trips() {
        let json = serde_json::json!({"resize": {"width": 320, "fit": "inside"}, "format": "webp"});
        let pb = to_pb(JobKind::Transform, Some(json)).expect("valid");
        let back = from_pb(Some(&pb));
        assert_eq!(back["resize"]["width"], 320);
        assert_eq!(back["resize"]["fit"], "inside");
        assert_eq!(back["format"], "webp");
        assert_eq!(back["quality"], serde_json::Value::Null);
        assert_eq!(back["lossless"], false);
        let lossless = serde_json::json!({"format": "webp", "quality": 90, "lossless": true});
        let pb = to_pb(JobKind::Transform, Some(lossless)).expect("valid");
        let Some(Params::Transform(t)) = &pb.params else {
            panic!("transform expected")
        };
        assert!(t.lossless);
        assert_eq!(from_pb(Some(&pb))["lossless"], true);
    }

    #[test]
    fn unknown_fields_and_missing_prompts_are_refused() {
        let err =
            to_pb(JobKind::Transform, Some(serde_json::json!({"resise": {}}))).expect_err("typo");
        assert_eq!(err.details[0].field, "params");
        assert!(to_pb(JobKind::Edit, None).is_err());
        assert!(to_pb(JobKind::BasicClean, None).is_ok());
    }
}
