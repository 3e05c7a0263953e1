//! The 12 shots of a `pose_set`: a pose or angle each, framed for the product's category and set in
//! the chosen scene. Each shot is one edit call with the product image.

/// Where the shots are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scene {
    /// A city street in daylight.
    Street,
    /// A photo studio with a seamless backdrop.
    Studio,
    /// A bright home interior.
    Indoor,
}

impl Scene {
    /// The name used in cache keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Street => "street",
            Self::Studio => "studio",
            Self::Indoor => "indoor",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Self::Street => {
                "on a city street in natural daylight, softly blurred shop fronts and pavement behind"
            }
            Self::Studio => {
                "in a photo studio with a seamless light-grey backdrop and soft, even three-point lighting"
            }
            Self::Indoor => {
                "in a bright, modern apartment with natural window light and a tidy, neutral interior"
            }
        }
    }
}

/// One of the 12 shots: a file-name slug and the pose or angle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shot {
    /// 1..=12.
    pub number: u32,
    /// Used in the output name, e.g. `shot-01-front`.
    pub slug: &'static str,
    /// The pose or camera angle.
    pub pose: &'static str,
}

impl Shot {
    /// The output file stem, e.g. `shot-01-front`.
    pub fn stem(&self) -> String {
        format!("shot-{:02}-{}", self.number, self.slug)
    }
}

/// Shots per pose set.
pub const SHOTS: usize = 12;

const TABLE: [(&str, &str); SHOTS] = [
    (
        "front",
        "standing straight, facing the camera, arms relaxed, eye-level shot",
    ),
    (
        "three-quarter-left",
        "body turned three-quarters to the left, face towards the camera",
    ),
    (
        "three-quarter-right",
        "body turned three-quarters to the right, face towards the camera",
    ),
    ("side", "full side profile, looking ahead"),
    (
        "back",
        "seen from behind, head turned slightly over the shoulder",
    ),
    (
        "walking",
        "walking towards the camera mid-stride, natural movement",
    ),
    (
        "seated",
        "seated on a simple stool, relaxed posture, facing the camera",
    ),
    ("leaning", "leaning casually against a wall, one knee bent"),
    (
        "low-angle",
        "confident stance photographed from a low camera angle",
    ),
    (
        "high-angle",
        "looking up at the camera photographed from a high angle",
    ),
    (
        "detail",
        "close-up framing on the product, showing material and fine details",
    ),
    ("lifestyle", "candid lifestyle moment, smiling, mid-gesture"),
];

/// The 12 shots, in order.
pub fn shots() -> [Shot; SHOTS] {
    let mut number = 0;
    TABLE.map(|(slug, pose)| {
        number += 1;
        Shot { number, slug, pose }
    })
}

/// How the category is framed: shoes need the feet in the picture, tops the upper body.
fn framing(category: &str) -> &'static str {
    let c = category.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| c.contains(w));
    if any(&[
        "shoe", "sneaker", "boot", "sandal", "heel", "loafer", "trainer",
    ]) {
        "framed from the knees down so the shoes are large and sharp in the picture"
    } else if any(&[
        "hoodie", "shirt", "top", "sweater", "jacket", "coat", "blouse", "tee",
    ]) {
        "framed from the hips up so the garment fills most of the picture"
    } else if any(&["trouser", "pant", "jean", "skirt", "short", "legging"]) {
        "framed from the waist down to the feet so the garment fills most of the picture"
    } else if any(&["bag", "backpack", "purse", "wallet"]) {
        "carrying the bag so it is clearly visible and sharp"
    } else if any(&[
        "hat",
        "cap",
        "scarf",
        "glasses",
        "sunglasses",
        "earring",
        "necklace",
    ]) {
        "framed on the head and shoulders so the accessory is clearly visible"
    } else {
        "full-length framing so the whole outfit is visible"
    }
}

/// The prompt for one shot.
pub fn prompt(shot: &Shot, scene: Scene, category: &str, description: &str) -> String {
    let product = if description.is_empty() {
        format!("the {category} from the reference image")
    } else {
        format!("the {category} from the reference image ({description})")
    };
    format!(
        "Professional fashion photograph of a model wearing {product}. Pose: {}. {}, {}. \
         Keep the product's colour, shape, material and details exactly as in the reference image. \
         Photorealistic, sharp focus, high detail.",
        shot.pose,
        capitalise(framing(category)),
        scene.setting(),
    )
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_distinct_shots() {
        let shots = shots();
        assert_eq!(shots.len(), 12);
        assert_eq!(shots[0].stem(), "shot-01-front");
        assert_eq!(shots[11].stem(), "shot-12-lifestyle");
        let mut slugs: Vec<_> = shots.iter().map(|s| s.slug).collect();
        slugs.dedup();
        assert_eq!(slugs.len(), 12);
    }

    #[test]
    fn prompts_follow_scene_and_category() {
        let shot = shots()[0];
        let shoes = prompt(&shot, Scene::Street, "shoes", "white leather sneakers");
        assert!(shoes.contains("knees down"), "{shoes}");
        assert!(shoes.contains("city street"), "{shoes}");
        assert!(shoes.contains("white leather sneakers"), "{shoes}");
        let hoodie = prompt(&shot, Scene::Studio, "hoodie", "");
        assert!(hoodie.contains("hips up"), "{hoodie}");
        assert!(hoodie.contains("photo studio"), "{hoodie}");
        let dress = prompt(&shots()[4], Scene::Indoor, "dress", "");
        assert!(dress.contains("Full-length"), "{dress}");
        assert!(dress.contains("from behind"), "{dress}");
    }
}
