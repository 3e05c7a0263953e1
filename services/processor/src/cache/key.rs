//! The cache key: SHA-256 over the source's SHA-256 and a canonical encoding of the recipe (kind,
//! every parameter with its default filled in, prompts with whitespace normalised, the model).

use atelier_engine::{CleanTemplate, Fit, Format, Rotation, TransformRecipe};
use sha2::{Digest, Sha256};

use crate::process::Work;

/// Bumped whenever the encoding or the outputs of a recipe change, so old entries are never read.
/// 2: WebP outputs became lossy at the recipe's quality (they were always lossless before).
const VERSION: &str = "atelier-cache/2";

/// Length-prefixed `name=value` fields: no two different recipes encode to the same bytes.
struct Canon(Sha256);

impl Canon {
    fn field(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        let value = value.to_string();
        for part in [name, value.as_str()] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part.as_bytes());
        }
        self
    }
}

/// The key (64 hex digits) of `work` on a source with `source_sha256` (`None` for generate) run
/// with `model`, or `None` when the result must not be reused (generate without a fixed seed).
pub fn cache_key(source_sha256: Option<&str>, work: &Work, model: Option<&str>) -> Option<String> {
    let mut c = Canon(Sha256::new());
    c.field("version", VERSION)
        .field("source", source_sha256.unwrap_or("none"))
        .field("kind", work.kind())
        .field("model", model.unwrap_or(""));
    match work {
        Work::Transform(r) => transform(&mut c, r),
        Work::BasicClean(clean) => {
            c.field("template", template(clean.template))
                .field("min_confidence", clean.min_confidence.to_bits());
        }
        Work::Edit(e) => {
            c.field("prompt", &e.prompt)
                .field("negative_prompt", &e.negative_prompt)
                .field("seed", optional(e.seed))
                .field("size", size(e.size))
                .field("num_images", e.num_images);
        }
        Work::Generate(g) => {
            let seed = g.seed?;
            c.field("prompt", &g.prompt)
                .field("negative_prompt", &g.negative_prompt)
                .field("size", size(g.size))
                .field("num_images", g.num_images)
                .field("steps", g.steps)
                .field("guidance_scale", g.guidance_scale.to_bits())
                .field("seed", seed);
        }
        Work::PoseSet(p) => {
            c.field("scene", p.scene.as_str())
                .field("category", &p.category)
                .field("description", &p.description);
        }
    }
    Some(hex::encode(c.0.finalize()))
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn size(size: Option<(u32, u32)>) -> String {
    size.map_or_else(|| "default".to_string(), |(w, h)| format!("{w}x{h}"))
}

fn transform(c: &mut Canon, r: &TransformRecipe) {
    match &r.resize {
        Some(resize) => c
            .field("resize.width", resize.width)
            .field("resize.height", resize.height)
            .field("resize.fit", fit(resize.fit)),
        None => c.field("resize", "none"),
    };
    match &r.crop {
        Some(crop) => c.field(
            "crop",
            format!("{},{},{},{}", crop.x, crop.y, crop.width, crop.height),
        ),
        None => c.field("crop", "none"),
    };
    let rotate = match r.rotate {
        Rotation::None => 0,
        Rotation::R90 => 90,
        Rotation::R180 => 180,
        Rotation::R270 => 270,
    };
    c.field("rotate", rotate)
        .field("flip_horizontal", r.flip_horizontal)
        .field("flip_vertical", r.flip_vertical)
        .field("auto_orient", r.auto_orient)
        .field("format", r.format.map_or("source", Format::extension))
        .field("quality", r.quality)
        .field("lossless", r.lossless)
        .field("strip_metadata", r.strip_metadata);
}

fn fit(fit: Fit) -> &'static str {
    match fit {
        Fit::Contain => "contain",
        Fit::Cover => "cover",
        Fit::Fill => "fill",
        Fit::Inside => "inside",
    }
}

fn template(t: CleanTemplate) -> &'static str {
    match t {
        CleanTemplate::All => "all",
        CleanTemplate::Matting => "matting",
        CleanTemplate::WhiteBg => "white_bg",
        CleanTemplate::Enhanced => "enhanced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::params::{normalise, EditWork, GenerateWork};

    const SHA: &str = "aa";

    fn edit(prompt: &str) -> Work {
        Work::Edit(EditWork {
            prompt: normalise(prompt),
            negative_prompt: String::new(),
            model: None,
            seed: None,
            size: None,
            num_images: 1,
        })
    }

    fn generate(seed: Option<i64>) -> Work {
        Work::Generate(GenerateWork {
            prompt: "a shoe".into(),
            negative_prompt: String::new(),
            model: None,
            size: None,
            num_images: 1,
            steps: 0,
            guidance_scale: 0.0,
            seed,
        })
    }

    #[test]
    fn spacing_does_not_change_the_key_but_words_do() {
        let a = cache_key(Some(SHA), &edit("make it  blue"), Some("m"));
        let b = cache_key(Some(SHA), &edit(" make it\nblue "), Some("m"));
        assert_eq!(a, b);
        assert_ne!(a, cache_key(Some(SHA), &edit("make it red"), Some("m")));
        assert_ne!(
            a,
            cache_key(Some(SHA), &edit("make it blue"), Some("other"))
        );
        assert_ne!(a, cache_key(Some("bb"), &edit("make it blue"), Some("m")));
    }

    #[test]
    fn generate_is_cacheable_only_with_a_seed() {
        assert!(cache_key(None, &generate(None), Some("m")).is_none());
        let with_seed = cache_key(None, &generate(Some(1)), Some("m"));
        assert!(with_seed.is_some());
        assert_ne!(with_seed, cache_key(None, &generate(Some(2)), Some("m")));
    }

    #[test]
    fn transform_parameters_are_in_the_key() {
        let plain = Work::Transform(TransformRecipe::default());
        let rotated = Work::Transform(TransformRecipe {
            rotate: Rotation::R90,
            ..TransformRecipe::default()
        });
        let lossless = Work::Transform(TransformRecipe {
            lossless: true,
            ..TransformRecipe::default()
        });
        let a = cache_key(Some(SHA), &plain, None).expect("key");
        assert_eq!(a.len(), 64);
        assert_ne!(Some(a.clone()), cache_key(Some(SHA), &rotated, None));
        assert_ne!(Some(a), cache_key(Some(SHA), &lossless, None));
        let clean = Work::BasicClean(crate::process::CleanWork {
            template: CleanTemplate::All,
            method: crate::process::MattingMethod::Auto,
            model: None,
            min_confidence: crate::process::DEFAULT_MIN_CONFIDENCE,
        });
        assert_ne!(
            cache_key(Some(SHA), &clean, None),
            cache_key(Some(SHA), &plain, None)
        );
    }
}
