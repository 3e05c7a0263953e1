//! Cutting the product out with its matte: the transparent cutout and the white square.

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

use crate::encode::{fit_within, resize_exact};
use crate::filter::box_blur;
use crate::matte::Matte;
use crate::EngineError;

/// Space left around the product on the white canvas, as a fraction of the canvas side.
const MARGIN: f32 = 0.10;
/// Largest side of the white canvas.
const MAX_CANVAS: u32 = 4096;

/// The product on transparency. Edge pixels mix product and background; their colour is replaced
/// by the product colour nearby (spread outwards from the solid interior) blended with the pixel
/// with the background's share removed, so no light halo shows on a dark backdrop.
pub(crate) fn cutout(rgb: &RgbImage, matte: &Matte) -> RgbaImage {
    let (w, h) = rgb.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let alpha = matte.alpha.as_raw();
    let mut solid = vec![0u8; rgb.as_raw().len()];
    let mut weight = vec![0u8; alpha.len()];
    for (i, &a) in alpha.iter().enumerate() {
        if a >= 250 {
            weight[i] = 255;
            solid[i * 3..i * 3 + 3].copy_from_slice(&rgb.as_raw()[i * 3..i * 3 + 3]);
        }
    }
    let r = (w.max(h) / 300).max(3) as usize;
    let spread = box_blur(&solid, wu, hu, 3, r);
    let coverage = box_blur(&weight, wu, hu, 1, r);
    RgbaImage::from_fn(w, h, |x, y| {
        let i = y as usize * wu + x as usize;
        let a = alpha[i];
        let px = rgb.get_pixel(x, y).0;
        match a {
            0 => Rgba([0, 0, 0, 0]),
            255 => Rgba([px[0], px[1], px[2], 255]),
            _ => {
                let p = px.map(f32::from);
                let b = matte.background.at(x, y, w, h);
                let k = (255.0 / f32::from(a)).min(2.0);
                let unmixed = [0, 1, 2].map(|c| b[c] + (p[c] - b[c]) * k);
                let t = (f32::from(a) / 255.0).powi(3);
                let cov = f32::from(coverage[i]);
                let colour = [0, 1, 2].map(|c| {
                    if cov >= 16.0 {
                        let nearby = f32::from(spread[i * 3 + c]) * 255.0 / cov;
                        nearby + (unmixed[c] - nearby) * t
                    } else {
                        unmixed[c]
                    }
                });
                let v = colour.map(|c| c.clamp(0.0, 255.0).round() as u8);
                Rgba([v[0], v[1], v[2], a])
            }
        }
    })
}

/// The cutout cropped to the product, centred on a white square with a margin. When nothing was
/// found the whole photo is used, which beats an empty white square.
pub(crate) fn on_white_square(cut: &RgbaImage, rgb: &RgbImage) -> Result<RgbImage, EngineError> {
    let product = match bounding_box(cut) {
        Some((x, y, w, h)) => image::imageops::crop_imm(cut, x, y, w, h).to_image(),
        None => DynamicImage::ImageRgb8(rgb.clone()).into_rgba8(),
    };
    let (pw, ph) = product.dimensions();
    let long = pw.max(ph);
    let cap = MAX_CANVAS
        .min(rgb.width().max(rgb.height()))
        .max(long.min(MAX_CANVAS));
    let side = ((long as f32 / (1.0 - 2.0 * MARGIN)).ceil() as u32).min(cap);
    let inner = ((side as f32) * (1.0 - 2.0 * MARGIN)).floor().max(1.0) as u32;
    let product = if long > inner {
        let (nw, nh) = fit_within(pw, ph, inner);
        resize_exact(&DynamicImage::ImageRgba8(product), nw, nh, false)?.into_rgba8()
    } else {
        product
    };
    let (pw, ph) = product.dimensions();
    let mut canvas = RgbImage::from_pixel(side, side, Rgb([255, 255, 255]));
    let (ox, oy) = ((side - pw) / 2, (side - ph) / 2);
    for (x, y, p) in product.enumerate_pixels() {
        let a = u32::from(p.0[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        canvas.put_pixel(ox + x, oy + y, Rgb([mix(p.0[0]), mix(p.0[1]), mix(p.0[2])]));
    }
    Ok(canvas)
}

/// Smallest rectangle holding every clearly visible pixel, or None when there is none.
fn bounding_box(cut: &RgbaImage) -> Option<(u32, u32, u32, u32)> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in cut.enumerate_pixels() {
        if p.0[3] > 16 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    (x0 <= x1 && y0 <= y1).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}
