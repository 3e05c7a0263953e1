//! The parameters of each job kind. One struct per kind serves both directions: a request's `params`
//! is read as the struct of its `kind` (unknown fields refused), and a job's `params` is written from it.

use atelier_proto::v1 as pb;
use atelier_types::{CleanTemplate, Fit, ImageFormat, MattingMethod, Scene};
use pb::job_params::Params;
use serde::{Deserialize, Serialize};

/// `transform`: applied in this order: auto-orient, crop, rotate, flip, resize, encode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Resize {
    pub width: u32,
    pub height: u32,
    pub fit: Option<Fit>,
}

/// A crop rectangle in source pixels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// `basic_clean`: matting.png, white-bg.jpg and/or enhanced.jpg.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct PoseSetParams {
    pub scene: Option<Scene>,
    /// For example `shoes`, `dress`, `hoodie`.
    pub category: Option<String>,
    pub description: Option<String>,
    pub model: Option<String>,
}

/// The OpenAPI schema of a `params` object: any one kind's parameters.
#[cfg(feature = "utoipa")]
pub fn params_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AnyOfBuilder, Schema};
    use utoipa::openapi::{Ref, RefOr};
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

fn some_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn some_number(value: u32) -> Option<u32> {
    (value != 0).then_some(value)
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
