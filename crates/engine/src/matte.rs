//! Classical alpha matte for a product on a plain background.
//!
//! The background is modelled as a smooth colour field (a quadratic per channel, robustly fitted to
//! a strip along the image border), each pixel's colour distance to it is mapped through a soft ramp
//! to alpha, and the mask is cleaned: specks dropped, small or product-coloured holes filled, the
//! interior made opaque, the far background made fully transparent, and the edge feathered.
//! Large images are matted at a reduced size and the alpha scaled back up (it is smooth anyway).

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::encode::fit_within;
use crate::filter::{box_blur, dilate, erode, flood};
use crate::EngineError;

/// Longest side the mask is computed at.
const WORK_SIDE: u32 = 1600;

/// A smooth background colour field over normalised coordinates.
#[derive(Clone, Debug)]
pub(crate) struct Background {
    /// Per channel: c0 + c1·u + c2·v + c3·u² + c4·v² + c5·u·v, with u, v in -0.5..0.5.
    coef: [[f32; 6]; 3],
}

impl Background {
    /// The background colour at pixel (x, y) of a `w`×`h` image.
    pub fn at(&self, x: u32, y: u32, w: u32, h: u32) -> [f32; 3] {
        let (u, v) = (
            (x as f32 + 0.5) / w as f32 - 0.5,
            (y as f32 + 0.5) / h as f32 - 0.5,
        );
        let t = terms(u, v);
        self.coef
            .map(|c| c.iter().zip(&t).map(|(a, b)| a * b).sum())
    }
}

fn terms(u: f32, v: f32) -> [f32; 6] {
    [1.0, u, v, u * u, v * v, u * v]
}

/// The estimated matte: alpha at full size and the background model it was measured against.
pub(crate) struct Matte {
    /// 0 = background, 255 = product.
    pub alpha: GrayImage,
    /// The fitted background colour field.
    pub background: Background,
    /// How far this method can be trusted on this photo, in 0..1 (see [`confidence`]).
    pub confidence: f32,
}

/// Estimates the matte of `image` (opaque RGB).
pub(crate) fn estimate(image: &RgbImage) -> Result<Matte, EngineError> {
    let (fw, fh) = image.dimensions();
    let (ww, wh) = fit_within(fw, fh, WORK_SIDE);
    let small;
    let work = if (ww, wh) == (fw, fh) {
        image
    } else {
        let resized =
            crate::encode::resize_exact(&DynamicImage::ImageRgb8(image.clone()), ww, wh, false)?;
        small = resized.into_rgb8();
        &small
    };
    let (background, noise, border_fit) = fit_background(work);
    let (w, h) = (ww as usize, wh as usize);
    let dist: Vec<f32> = work
        .enumerate_pixels()
        .map(|(x, y, p)| distance(p.0, background.at(x, y, ww, wh)))
        .collect();
    let lo = (2.5 * noise + 12.0).clamp(14.0, 45.0);
    let hi = lo + (0.8 * lo).clamp(10.0, 30.0);
    let mut soft: Vec<u8> = dist
        .iter()
        .map(|&d| {
            let t = ((d - lo) / (hi - lo)).clamp(0.0, 1.0);
            (t * t * (3.0 - 2.0 * t) * 255.0).round() as u8
        })
        .collect();
    let (bw, bh) = work.dimensions();
    crate::shadow::clear_shadows(work, |x, y| background.at(x, y, bw, bh), &mut soft);
    let alpha = clean(&soft, &dist, w, h, lo);
    let confidence = confidence(&alpha, w, h, noise, border_fit);
    let alpha = GrayImage::from_raw(ww, wh, alpha)
        .ok_or_else(|| EngineError::Encode("internal: mask size mismatch".into()))?;
    let alpha = if (ww, wh) == (fw, fh) {
        alpha
    } else {
        let mut dst = GrayImage::new(fw, fh);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new()
            .resize(&alpha, &mut dst, &options)
            .map_err(|e| EngineError::Encode(format!("mask resize failed: {e}")))?;
        dst
    };
    Ok(Matte {
        alpha,
        background,
        confidence,
    })
}

/// Colour distance that forgives darker-than-background pixels a little, so soft shadows stay
/// background while coloured or brighter product pixels stand out.
fn distance(p: [u8; 3], b: [f32; 3]) -> f32 {
    let p = p.map(f32::from);
    let luma = |c: [f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    let dl = luma(p) - luma(b);
    let dr = (p[0] - b[0]) - dl;
    let db = (p[2] - b[2]) - dl;
    let wl = if dl < 0.0 { 0.6 } else { 1.0 };
    ((wl * dl).powi(2) + dr.powi(2) + db.powi(2)).sqrt()
}

/// Largest colour distance of a border sample that still counts as fitting a plain background.
const PLAIN_TOLERANCE: f32 = 20.0;

/// How far the classical method can be trusted on this photo, in 0..1. It is only right for a
/// subject on a plain backdrop, so it asks three things of its own result: does the border look like
/// one smooth colour field (the share of border samples the fit explains, squared), is that
/// backdrop quiet (its noise, full marks up to 10, none from 30), and does the subject stay inside
/// the frame (a subject cut by the frame, or a "subject" that is the frame, cannot be told from
/// the backdrop). A cut-out that found almost nothing or almost everything is not trusted either.
fn confidence(alpha: &[u8], w: usize, h: usize, noise: f32, border_fit: f32) -> f32 {
    let ring: Vec<u8> = (0..w)
        .flat_map(|x| [alpha[x], alpha[(h - 1) * w + x]])
        .chain((0..h).flat_map(|y| [alpha[y * w], alpha[y * w + w - 1]]))
        .collect();
    let touch = ring.iter().filter(|&&a| a >= 128).count() as f32 / ring.len().max(1) as f32;
    let coverage = alpha.iter().filter(|&&a| a >= 128).count() as f32 / alpha.len().max(1) as f32;
    let quiet = ((30.0 - noise) / 20.0).clamp(0.0, 1.0);
    let inside = (1.0 - 2.0 * touch).clamp(0.0, 1.0);
    let sane = if (0.005..=0.95).contains(&coverage) {
        1.0
    } else {
        0.2
    };
    (border_fit * border_fit * quiet * inside * sane).clamp(0.0, 1.0)
}

/// Robust quadratic fit to a border strip; returns the model, the noise level (in distance units)
/// and the share of border samples within [`PLAIN_TOLERANCE`] of the model.
fn fit_background(img: &RgbImage) -> (Background, f32, f32) {
    let (w, h) = img.dimensions();
    let strip = (w.min(h) / 40).max(2);
    let step = ((2 * strip * (w + h)) as f32 / 40_000.0).sqrt().max(1.0) as u32;
    let mut samples: Vec<(u32, u32, [u8; 3])> = Vec::new();
    for y in (0..h).step_by(step as usize) {
        for x in (0..w).step_by(step as usize) {
            if x < strip || y < strip || x + strip >= w || y + strip >= h {
                samples.push((x, y, img.get_pixel(x, y).0));
            }
        }
    }
    // Start from the median colour, so a product touching the border does not steer the fit.
    let median = |c: usize| {
        let mut v: Vec<u8> = samples.iter().map(|s| s.2[c]).collect();
        v.sort_unstable();
        f32::from(v.get(v.len() / 2).copied().unwrap_or(255))
    };
    let mut model = Background {
        coef: [0, 1, 2].map(|c| [median(c), 0.0, 0.0, 0.0, 0.0, 0.0]),
    };
    let mut noise = 0.0;
    for _ in 0..4 {
        let resid: Vec<f32> = samples
            .iter()
            .map(|&(x, y, p)| distance(p, model.at(x, y, w, h)))
            .collect();
        let mut sorted = resid.clone();
        sorted.sort_unstable_by(f32::total_cmp);
        noise = 1.4826 * sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let cut = (3.0 * noise).max(6.0);
        let inliers: Vec<_> = samples
            .iter()
            .zip(&resid)
            .filter(|(_, &r)| r <= cut)
            .map(|(s, _)| *s)
            .collect();
        if inliers.len() < 12 {
            break;
        }
        if let Some(fitted) = least_squares(&inliers, w, h) {
            model = fitted;
        }
    }
    let fitting = samples
        .iter()
        .filter(|&&(x, y, p)| distance(p, model.at(x, y, w, h)) <= PLAIN_TOLERANCE)
        .count();
    let border_fit = fitting as f32 / samples.len().max(1) as f32;
    (model, noise, border_fit)
}

/// Per-channel least-squares fit of the quadratic field (normal equations, Gaussian elimination).
fn least_squares(samples: &[(u32, u32, [u8; 3])], w: u32, h: u32) -> Option<Background> {
    let mut ata = [[0f64; 6]; 6];
    let mut atb = [[0f64; 6]; 3];
    for &(x, y, p) in samples {
        let t = terms(
            (x as f32 + 0.5) / w as f32 - 0.5,
            (y as f32 + 0.5) / h as f32 - 0.5,
        )
        .map(f64::from);
        for i in 0..6 {
            for j in 0..6 {
                ata[i][j] += t[i] * t[j];
            }
            for c in 0..3 {
                atb[c][i] += t[i] * f64::from(p[c]);
            }
        }
    }
    let mut coef = [[0f32; 6]; 3];
    for c in 0..3 {
        coef[c] = solve6(ata, atb[c])?.map(|v| v as f32);
    }
    Some(Background { coef })
}

fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in 0..6 {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col];
                for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
                b[row] -= f * b[col];
            }
        }
    }
    Some(std::array::from_fn(|i| b[i] / a[i][i]))
}

/// 4-connected components of `mask == want`; returns the label per pixel (0 = not in the set) and
/// the area of each label (index 0 unused).
fn components(mask: &[u8], w: usize, h: usize, want: u8) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; mask.len()];
    let mut areas = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] != want || labels[start] != 0 {
            continue;
        }
        let label = areas.len() as u32;
        let mut area = 1;
        labels[start] = label;
        stack.push(start);
        flood(w, h, &mut stack, |_, j| {
            let joins = mask[j] == want && labels[j] == 0;
            if joins {
                labels[j] = label;
                area += 1;
            }
            joins
        });
        areas.push(area);
    }
    (labels, areas)
}

/// Turns the soft ramp into a clean matte (see the module comment).
fn clean(soft: &[u8], dist: &[f32], w: usize, h: usize, lo: f32) -> Vec<u8> {
    let n = soft.len();
    let fg: Vec<u8> = soft.iter().map(|&a| u8::from(a >= 128)).collect();
    let (labels, areas) = components(&fg, w, h, 1);
    let largest = areas.iter().copied().max().unwrap_or(0);
    let min_area = ((largest as f32 * 0.03) as usize).max(n / 2000).max(1);
    let mut solid: Vec<u8> = labels
        .iter()
        .map(|&l| u8::from(l != 0 && areas[l as usize] >= min_area))
        .collect();

    // Holes: background regions that do not reach the border.
    let (holes, hole_areas) = components(&solid, w, h, 0);
    let mut touches = vec![false; hole_areas.len()];
    let mut dist_sum = vec![0f32; hole_areas.len()];
    for (i, &l) in holes.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            touches[l as usize] = true;
        }
        dist_sum[l as usize] += dist[i];
    }
    let fill: Vec<bool> = (0..hole_areas.len())
        .map(|l| {
            let area = hole_areas[l].max(1);
            let looks_like_background = dist_sum[l] / area as f32 <= 0.6 * lo;
            l != 0 && !touches[l] && (area < n / 1000 || !looks_like_background)
        })
        .collect();
    for (s, &l) in solid.iter_mut().zip(&holes) {
        if fill[l as usize] {
            *s = 1;
        }
    }

    let band = (w.max(h) / 400).max(2);
    let core = erode(&solid, w, h, band);
    let near = dilate(&solid, w, h, band);
    let alpha: Vec<u8> = (0..n)
        .map(|i| match (core[i], near[i]) {
            (1, _) => 255,
            (_, 0) => 0,
            _ if solid[i] == 1 => soft[i].max(128),
            // Just outside the product: mostly background (or contact shadow), so fade faster.
            _ => {
                let t = u32::from(soft[i].min(127));
                (t * t / 127) as u8
            }
        })
        .collect();
    box_blur(&box_blur(&alpha, w, h, 1, 1), w, h, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::product_photo;

    #[test]
    fn background_fit_follows_a_gradient() {
        let img = RgbImage::from_fn(200, 100, |x, y| {
            image::Rgb([100 + (x / 4) as u8, 150, 200 - (y / 2) as u8])
        });
        let (bg, noise, border_fit) = fit_background(&img);
        assert!(border_fit > 0.99, "{border_fit}");
        let c = bg.at(100, 50, 200, 100);
        assert!(
            (c[0] - 125.0).abs() < 2.0 && (c[2] - 175.0).abs() < 2.0,
            "{c:?}"
        );
        assert!(noise < 2.0, "{noise}");
    }

    #[test]
    fn product_gets_an_opaque_centre_and_transparent_corners() {
        let img = product_photo(240, 180).into_rgb8();
        let m = estimate(&img).expect("matte");
        for (x, y) in [(0, 0), (239, 0), (0, 179), (239, 179), (20, 90), (120, 10)] {
            assert_eq!(m.alpha.get_pixel(x, y).0[0], 0, "({x},{y})");
        }
        for (x, y) in [(120, 90), (100, 80), (140, 110)] {
            assert_eq!(m.alpha.get_pixel(x, y).0[0], 255, "({x},{y})");
        }
        // The soft shadow under the product stays background.
        assert!(m.alpha.get_pixel(120, 172).0[0] < 40);
    }

    #[test]
    fn a_background_coloured_hole_stays_open_and_specks_go() {
        let (w, h) = (200, 200);
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (dx, dy) = (x as i32 - 100, y as i32 - 100);
            let r2 = dx * dx + dy * dy;
            if (900..=4900).contains(&r2) || (x == 10 && y == 10) {
                image::Rgb([30, 60, 160])
            } else {
                image::Rgb([230, 230, 230])
            }
        });
        let m = estimate(&img).expect("matte");
        assert_eq!(m.alpha.get_pixel(100, 100).0[0], 0, "the ring's hole");
        assert_eq!(m.alpha.get_pixel(150, 100).0[0], 255, "the ring");
        assert_eq!(m.alpha.get_pixel(10, 10).0[0], 0, "a one-pixel speck");
    }

    #[test]
    fn a_grey_product_with_a_soft_shadow_keeps_its_body() {
        // Mid-grey disc (neutral, like a shadow but with a sharp edge) casting a soft shadow.
        let img = RgbImage::from_fn(240, 180, |x, y| {
            let (dx, dy) = (x as f32 - 120.0, y as f32 - 80.0);
            let r = (dx * dx + dy * dy).sqrt();
            let edge = (50.0 - r).clamp(0.0, 1.0);
            let (sx, sy) = ((x as f32 - 130.0) / 70.0, (y as f32 - 140.0) / 18.0);
            let shadow = 1.0 - 0.3 * (-(sx * sx + sy * sy)).exp();
            let bg = [222.0 * shadow, 222.0 * shadow, 226.0 * shadow];
            let fg = [128.0, 128.0, 131.0];
            image::Rgb([0, 1, 2].map(|c| (bg[c] + (fg[c] - bg[c]) * edge) as u8))
        });
        let img = image::load_from_memory(&crate::testutil::encode(
            &DynamicImage::ImageRgb8(img),
            image::ImageFormat::Jpeg,
        ))
        .expect("jpeg")
        .into_rgb8();
        let m = estimate(&img).expect("matte");
        for (x, y) in [(120, 80), (90, 80), (150, 80), (120, 50), (120, 120)] {
            assert_eq!(m.alpha.get_pixel(x, y).0[0], 255, "disc at ({x},{y})");
        }
        assert_eq!(m.alpha.get_pixel(130, 150).0[0], 0, "shadow below the disc");
        assert_eq!(m.alpha.get_pixel(200, 140).0[0], 0, "shadow to the right");
    }

    #[test]
    fn large_images_are_matted_at_a_reduced_size() {
        let img = product_photo(2000, 1000).into_rgb8();
        let m = estimate(&img).expect("matte");
        assert_eq!(m.alpha.dimensions(), (2000, 1000));
        assert_eq!(m.alpha.get_pixel(1000, 500).0[0], 255);
        assert_eq!(m.alpha.get_pixel(5, 5).0[0], 0);
    }
}
