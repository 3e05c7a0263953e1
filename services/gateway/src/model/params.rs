//! A request's `params`, read as the struct of its `kind` (unknown fields refused); the structs and
//! a job's `params` as JSON are `atelier_views::params`.

use atelier_proto::v1 as pb;
use pb::job_params::Params;

pub use atelier_views::params::{
    from_pb, params_schema, BasicCleanParams, Crop, EditParams, GenerateParams, PoseSetParams,
    Resize, TransformParams,
};

use super::enums::{CleanTemplate, Fit, ImageFormat, JobKind, MattingMethod, Scene};
use crate::error::ApiError;

fn text(value: Option<String>) -> String {
    value.unwrap_or_default()
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
