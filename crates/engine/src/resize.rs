//! Resize geometry: the output size for each fit mode, and the plan that lets a JPEG be decoded at
//! a reduced scale when the output is much smaller than the source.

use crate::decode::exif_orientation;
use crate::probe::{megapixels, Probed};
use crate::{EngineError, Fit, Format, Limits, Resize, Rotation, SourceInfo, TransformRecipe};

/// A resize worked out before decoding: the output size and how much smaller it is than the source.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// Output width, height, and whether cover cropping applies.
    pub target: (u32, u32, bool),
    /// Output size over source size, on the axis that needs the most detail.
    pub scale: f64,
}

/// For a JPEG resized without a crop, the output size is known before decoding (from the header,
/// the EXIF orientation and the rotation), which lets the decoder work at a reduced scale.
pub(crate) fn plan(
    probed: &Probed<'_>,
    recipe: &TransformRecipe,
    limits: &Limits,
) -> Result<Option<Plan>, EngineError> {
    let info = &probed.info;
    let (Some(resize), None, Format::Jpeg) = (&recipe.resize, &recipe.crop, info.format) else {
        return Ok(None);
    };
    let orientation = match &probed.jpeg {
        Some(h) if recipe.auto_orient => h.exif.and_then(exif_orientation).unwrap_or(1),
        _ => 1,
    };
    let swap = (orientation >= 5) != matches!(recipe.rotate, Rotation::R90 | Rotation::R270);
    let (w, h) = if swap {
        (info.height, info.width)
    } else {
        (info.width, info.height)
    };
    let target = target_size(w, h, resize, limits)?;
    let scale = (f64::from(target.0) / f64::from(w)).max(f64::from(target.1) / f64::from(h));
    Ok(Some(Plan { target, scale }))
}

/// The decode size (stored axes) for a plan whose output is at most half the source; the scale is
/// the same on both axes, so the orientation does not matter here.
pub(crate) fn reduced_decode_size(info: &SourceInfo, plan: Plan) -> Option<(u32, u32)> {
    let size = |v: u32| (f64::from(v) * plan.scale).ceil() as u32;
    (plan.scale <= 0.5).then(|| (size(info.width), size(info.height)))
}

/// Output size for a resize, and whether the source is cropped centred (cover) rather than stretched.
pub(crate) fn target_size(
    src_w: u32,
    src_h: u32,
    r: &Resize,
    limits: &Limits,
) -> Result<(u32, u32, bool), EngineError> {
    let scaled = |v: u32, num: u32, den: u32| -> u32 {
        let den = u64::from(den.max(1));
        ((u64::from(v) * u64::from(num) + den / 2) / den).clamp(1, u64::from(u32::MAX)) as u32
    };
    let (w, h, cover) = match (r.width, r.height) {
        (0, 0) => {
            return Err(EngineError::InvalidRecipe(
                "resize needs a width, a height or both".into(),
            ))
        }
        (0, th) if r.fit == Fit::Inside && th >= src_h => (src_w, src_h, false),
        (tw, 0) if r.fit == Fit::Inside && tw >= src_w => (src_w, src_h, false),
        (0, th) => (scaled(src_w, th, src_h), th, false),
        (tw, 0) => (tw, scaled(src_h, tw, src_w), false),
        (tw, th) => match r.fit {
            Fit::Fill => (tw, th, false),
            Fit::Cover => (tw, th, true),
            Fit::Contain | Fit::Inside => {
                // Scale by the tighter side: compare tw/src_w with th/src_h without floats.
                let by_width = u64::from(tw) * u64::from(src_h) <= u64::from(th) * u64::from(src_w);
                let (w, h) = if by_width {
                    (tw, scaled(src_h, tw, src_w).min(th))
                } else {
                    (scaled(src_w, th, src_h).min(tw), th)
                };
                if r.fit == Fit::Inside && (w > src_w || h > src_h) {
                    (src_w, src_h, false)
                } else {
                    (w, h, false)
                }
            }
        },
    };
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(EngineError::InvalidRecipe(format!(
            "resize to {w}x{h} ({}) is over the {} limit; ask for a smaller size",
            megapixels(pixels),
            megapixels(limits.max_pixels)
        )));
    }
    Ok((w, h, cover))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(w: u32, h: u32, fit: Fit) -> (u32, u32, bool) {
        target_size(
            400,
            200,
            &Resize {
                width: w,
                height: h,
                fit,
            },
            &Limits::default(),
        )
        .expect("size")
    }

    #[test]
    fn each_fit_mode_sizes_a_400x200_source() {
        assert_eq!(size(100, 100, Fit::Contain), (100, 50, false));
        assert_eq!(size(1000, 1000, Fit::Contain), (1000, 500, false));
        assert_eq!(size(100, 100, Fit::Inside), (100, 50, false));
        assert_eq!(size(1000, 1000, Fit::Inside), (400, 200, false));
        assert_eq!(size(100, 100, Fit::Cover), (100, 100, true));
        assert_eq!(size(30, 70, Fit::Fill), (30, 70, false));
        assert_eq!(size(0, 50, Fit::Fill), (100, 50, false));
        assert_eq!(size(3, 0, Fit::Contain), (3, 2, false));
        assert_eq!(size(1, 0, Fit::Contain), (1, 1, false), "never a zero side");
    }

    #[test]
    fn the_reduced_decode_keeps_enough_detail() {
        let info = SourceInfo {
            format: Format::Jpeg,
            width: 4000,
            height: 3000,
        };
        let p = Plan {
            target: (512, 384, false),
            scale: 512.0 / 4000.0,
        };
        assert_eq!(reduced_decode_size(&info, p), Some((512, 384)));
        let p = Plan {
            target: (2500, 1875, false),
            scale: 2500.0 / 4000.0,
        };
        assert_eq!(
            reduced_decode_size(&info, p),
            None,
            "more than half: decode in full"
        );
    }
}
