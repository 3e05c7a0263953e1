//! Soft-shadow removal for the classical matte.
//!
//! A shadow on a plain background is the background made darker without changing its hue, and it
//! fades smoothly. So the background region is grown into pixels that are a neutral darkening of the
//! background model, one gentle luminance step at a time; a product's edge is a steep step (or a
//! change of hue) and stops the growth, so even grey products keep their pixels.

use image::RgbImage;

use crate::filter::{box_blur, flood};

/// Darkest shadow (as a fraction of the background's luminance) still treated as background.
const DARKEST: f32 = 0.4;
/// How far each channel's darkening may differ from the overall darkening and still be neutral.
const NEUTRAL: f32 = 0.05;
/// Largest luminance step between neighbours (after a 3×3 blur) that a shadow can contain.
const MAX_STEP: i16 = 4;

/// Clears `soft` (alpha, 0..=255) wherever a soft shadow reaches out from the clear background;
/// `background(x, y)` is the background model's colour there.
pub(crate) fn clear_shadows(
    img: &RgbImage,
    background: impl Fn(u32, u32) -> [f32; 3],
    soft: &mut [u8],
) {
    let (w, h) = img.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let smooth = box_blur(img.as_raw(), wu, hu, 3, 1);
    let luma = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut lum = vec![0u8; wu * hu];
    let mut shadow_like = vec![false; wu * hu];
    for y in 0..h {
        for x in 0..w {
            let i = y as usize * wu + x as usize;
            let p = [0, 1, 2].map(|c| f32::from(smooth[i * 3 + c]));
            let b = background(x, y).map(|v| v.max(1.0));
            let ratio = luma(&p) / luma(&b);
            let raw = img.get_pixel(x, y).0.map(f32::from);
            lum[i] = luma(&raw).round().clamp(0.0, 255.0) as u8;
            shadow_like[i] = (DARKEST..0.99).contains(&ratio)
                && (0..3).all(|c| (p[c] / b[c] - ratio).abs() < NEUTRAL);
        }
    }
    let lum = box_blur(&lum, wu, hu, 1, 1);
    // Only gently sloped pixels can be shadow: an edge is steep across it even where it runs almost
    // parallel to a pixel row (where the step from one pixel to the next along it is small).
    let gentle: Vec<bool> = (0..wu * hu)
        .map(|i| {
            let (x, y) = (i % wu, i / wu);
            let l = |xx: usize, yy: usize| i16::from(lum[yy * wu + xx]);
            let gx = l((x + 1).min(wu - 1), y) - l(x.saturating_sub(1), y);
            let gy = l(x, (y + 1).min(hu - 1)) - l(x, y.saturating_sub(1));
            gx.abs().max(gy.abs()) <= 2 * MAX_STEP
        })
        .collect();
    let mut stack: Vec<usize> = (0..soft.len()).filter(|&i| soft[i] == 0).collect();
    flood(wu, hu, &mut stack, |i, j| {
        let step = (i16::from(lum[i]) - i16::from(lum[j])).abs();
        let grows = soft[j] != 0 && shadow_like[j] && gentle[j] && step <= MAX_STEP;
        if grows {
            soft[j] = 0;
        }
        grows
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn flat_bg(_: u32, _: u32) -> [f32; 3] {
        [220.0, 220.0, 224.0]
    }

    #[test]
    fn a_soft_shadow_is_cleared_but_a_grey_product_is_kept() {
        // A grey square with a sharp edge, and a soft shadow fading to its right.
        let img = RgbImage::from_fn(120, 60, |x, _| {
            if (20..50).contains(&x) {
                Rgb([120, 120, 122])
            } else if (50..110).contains(&x) {
                let k = 0.7 + 0.3 * (x - 50) as f32 / 60.0;
                Rgb([(220.0 * k) as u8, (220.0 * k) as u8, (224.0 * k) as u8])
            } else {
                Rgb([220, 220, 224])
            }
        });
        let mut soft: Vec<u8> = img
            .pixels()
            .map(|p| if p.0[0] < 215 { 255 } else { 0 })
            .collect();
        clear_shadows(&img, flat_bg, &mut soft);
        assert_eq!(soft[30 * 120 + 35], 255, "grey product");
        assert_eq!(soft[30 * 120 + 80], 0, "shadow");
        assert_eq!(soft[30 * 120 + 52], 0, "shadow next to the product");
    }

    #[test]
    fn a_coloured_product_is_never_a_shadow() {
        let img = RgbImage::from_fn(60, 60, |x, _| {
            if (20..40).contains(&x) {
                Rgb([200, 150, 150])
            } else {
                Rgb([220, 220, 224])
            }
        });
        let mut soft: Vec<u8> = img
            .pixels()
            .map(|p| if p.0[1] < 200 { 255 } else { 0 })
            .collect();
        clear_shadows(&img, flat_bg, &mut soft);
        assert_eq!(soft[30 * 60 + 30], 255);
    }
}
