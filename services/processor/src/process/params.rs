//! Parameters of the model kinds (edit, generate, pose_set), validated once at the edge.

use atelier_codes::FieldViolation;
use atelier_proto::v1;

use crate::providers::pose::Scene;

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 8_000;
/// Images one edit or generate task may ask for.
pub const MAX_IMAGES: u32 = 4;
/// Smallest and largest requested side in pixels.
const SIDES: std::ops::RangeInclusive<u32> = 64..=4096;

/// An `edit` task.
#[derive(Clone, Debug, PartialEq)]
pub struct EditWork {
    /// Whitespace-normalised prompt.
    pub prompt: String,
    /// Whitespace-normalised negative prompt (may be empty).
    pub negative_prompt: String,
    /// The model asked for; `None` takes the first model serving edits.
    pub model: Option<String>,
    /// Fixed seed, if any.
    pub seed: Option<i64>,
    /// Output size, or the provider's default.
    pub size: Option<(u32, u32)>,
    /// 1..=4.
    pub num_images: u32,
}

/// A `generate` task.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateWork {
    /// Whitespace-normalised prompt.
    pub prompt: String,
    /// Whitespace-normalised negative prompt (may be empty).
    pub negative_prompt: String,
    /// The model asked for; `None` takes the first model serving generate.
    pub model: Option<String>,
    /// Output size, or the provider's default.
    pub size: Option<(u32, u32)>,
    /// 1..=4.
    pub num_images: u32,
    /// Sampling steps; 0 is the provider's default.
    pub steps: u32,
    /// Guidance scale; 0 is the provider's default.
    pub guidance_scale: f32,
    /// Fixed seed, if any; only then is the result cacheable.
    pub seed: Option<i64>,
}

/// A `pose_set` task.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseSetWork {
    /// Where the shots are set.
    pub scene: Scene,
    /// Product category, e.g. "shoes".
    pub category: String,
    /// Free description of the product (may be empty).
    pub description: String,
    /// The model asked for; `None` takes the first model serving pose_set.
    pub model: Option<String>,
}

/// Trims and collapses runs of whitespace to one space, so that prompts differing only in spacing
/// are the same prompt (for the provider and for the cache).
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn model(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn prompt(field: &str, text: &str, required: bool, violations: &mut Vec<FieldViolation>) -> String {
    let text = normalise(text);
    if required && text.is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if text.chars().count() > MAX_PROMPT_CHARS {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    text
}

fn num_images(field: &str, n: u32, violations: &mut Vec<FieldViolation>) -> u32 {
    match n {
        0 => 1,
        n if n <= MAX_IMAGES => n,
        _ => {
            violations.push(FieldViolation::new(
                field,
                format!("must be between 1 and {MAX_IMAGES} (0 means 1)"),
            ));
            1
        }
    }
}

fn side_ok(side: u32) -> bool {
    SIDES.contains(&side)
}

/// Parses "WIDTHxHEIGHT"; empty means the provider's default.
fn size(field: &str, text: &str, violations: &mut Vec<FieldViolation>) -> Option<(u32, u32)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if side_ok(w) && side_ok(h) => Some((w, h)),
        _ => {
            violations.push(FieldViolation::new(
                field,
                format!(
                    "must read WIDTHxHEIGHT with sides from {} to {} pixels, e.g. 1024x1024",
                    SIDES.start(),
                    SIDES.end()
                ),
            ));
            None
        }
    }
}

/// Validates `edit` parameters.
pub fn edit(p: &v1::EditParams, violations: &mut Vec<FieldViolation>) -> EditWork {
    EditWork {
        prompt: prompt("params.edit.prompt", &p.prompt, true, violations),
        negative_prompt: prompt(
            "params.edit.negative_prompt",
            &p.negative_prompt,
            false,
            violations,
        ),
        model: model(&p.model),
        seed: p.seed,
        size: size("params.edit.size", &p.size, violations),
        num_images: num_images("params.edit.num_images", p.num_images, violations),
    }
}

/// Validates `generate` parameters.
pub fn generate(p: &v1::GenerateParams, violations: &mut Vec<FieldViolation>) -> GenerateWork {
    let size = match (p.width, p.height) {
        (0, 0) => None,
        (w, h) if side_ok(w) && side_ok(h) => Some((w, h)),
        _ => {
            violations.push(FieldViolation::new(
                "params.generate.width",
                format!(
                    "width and height must both be 0 (the model's default) or from {} to {} pixels",
                    SIDES.start(),
                    SIDES.end()
                ),
            ));
            None
        }
    };
    if p.steps > 500 {
        violations.push(FieldViolation::new(
            "params.generate.steps",
            "must be at most 500 (0 means the model's default)",
        ));
    }
    if !(p.guidance_scale.is_finite() && (0.0..=100.0).contains(&p.guidance_scale)) {
        violations.push(FieldViolation::new(
            "params.generate.guidance_scale",
            "must be between 0 and 100 (0 means the model's default)",
        ));
    }
    GenerateWork {
        prompt: prompt("params.generate.prompt", &p.prompt, true, violations),
        negative_prompt: prompt(
            "params.generate.negative_prompt",
            &p.negative_prompt,
            false,
            violations,
        ),
        model: model(&p.model),
        size,
        num_images: num_images("params.generate.num_images", p.num_images, violations),
        steps: p.steps,
        guidance_scale: p.guidance_scale,
        seed: p.seed,
    }
}

/// Validates `pose_set` parameters.
pub fn pose_set(p: &v1::PoseSetParams, violations: &mut Vec<FieldViolation>) -> PoseSetWork {
    let scene = match v1::Scene::try_from(p.scene) {
        Ok(v1::Scene::Unspecified | v1::Scene::Studio) => Scene::Studio,
        Ok(v1::Scene::Street) => Scene::Street,
        Ok(v1::Scene::Indoor) => Scene::Indoor,
        Err(_) => {
            violations.push(FieldViolation::new(
                "params.pose_set.scene",
                format!("unknown scene {}", p.scene),
            ));
            Scene::Studio
        }
    };
    let category = normalise(&p.category);
    if category.is_empty() || category.chars().count() > 64 {
        violations.push(FieldViolation::new(
            "params.pose_set.category",
            "name the product category in 1 to 64 characters, e.g. shoes, dress, hoodie",
        ));
    }
    let description = normalise(&p.description);
    if description.chars().count() > 1_000 {
        violations.push(FieldViolation::new(
            "params.pose_set.description",
            "must be at most 1000 characters",
        ));
    }
    PoseSetWork {
        scene,
        category,
        description,
        model: model(&p.model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_normalised() {
        assert_eq!(normalise("  a  red\n\tshoe "), "a red shoe");
        let mut v = Vec::new();
        let work = edit(
            &v1::EditParams {
                prompt: " make it\n blue ".into(),
                size: "512x768".into(),
                ..Default::default()
            },
            &mut v,
        );
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(work.prompt, "make it blue");
        assert_eq!(work.size, Some((512, 768)));
        assert_eq!(work.num_images, 1);
        assert_eq!(work.model, None);
    }

    #[test]
    fn bad_values_are_listed() {
        let mut v = Vec::new();
        edit(
            &v1::EditParams {
                prompt: "  ".into(),
                size: "big".into(),
                num_images: 5,
                ..Default::default()
            },
            &mut v,
        );
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "params.edit.prompt",
                "params.edit.size",
                "params.edit.num_images"
            ]
        );

        let mut v = Vec::new();
        generate(
            &v1::GenerateParams {
                prompt: "x".into(),
                width: 512,
                height: 0,
                guidance_scale: f32::NAN,
                steps: 10_000,
                ..Default::default()
            },
            &mut v,
        );
        assert_eq!(v.len(), 3, "{v:?}");

        let mut v = Vec::new();
        pose_set(
            &v1::PoseSetParams {
                scene: 9,
                category: String::new(),
                ..Default::default()
            },
            &mut v,
        );
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
