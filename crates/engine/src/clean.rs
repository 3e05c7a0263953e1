//! The `basic_clean` kind: matting.png, white-bg.jpg and enhanced.jpg.
//!
//! This is a classical estimate meant for product photos on plain, light backgrounds: the background
//! colour is estimated from the image border and everything that differs enough from it is the
//! product (see `matte.rs`). It does not understand busy scenes; a segmentation model can be
//! configured later for those, and the processor would route `basic_clean` to it instead.

use image::{DynamicImage, GrayImage, RgbImage};

use crate::cutout::{cutout, on_white_square};
use crate::decode::decode;
use crate::encode::{flatten_on_white, render};
use crate::filter::box_blur;
use crate::matte::estimate;
use crate::{CleanTemplate, EngineError, Format, Limits, Rendered};

/// JPEG quality of white-bg.jpg and enhanced.jpg.
const QUALITY: u8 = 90;
/// `progress(stage, percent)` is called as work advances ("decode", "matting", "white_bg", "enhance").
pub fn basic_clean(
    bytes: &[u8],
    template: CleanTemplate,
    limits: &Limits,
    progress: &mut dyn FnMut(&str, u32),
) -> Result<Vec<Rendered>, EngineError> {
    use CleanTemplate::{All, Enhanced, Matting, WhiteBg};
    progress("decode", 0);
    let image = decode(bytes, limits)?.oriented();
    let source_alpha = match &image {
        DynamicImage::ImageRgba8(rgba) => {
            Some(GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y).0[3]])
            }))
        }
        _ => None,
    };
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => flatten_on_white(&other),
    };
    let mut out = Vec::new();
    if template != Enhanced {
        progress("matting", 20);
        let mut matte = estimate(&rgb)?;
        if let Some(src) = &source_alpha {
            for (a, s) in matte.alpha.pixels_mut().zip(src.pixels()) {
                a.0[0] = ((u16::from(a.0[0]) * u16::from(s.0[0]) + 127) / 255) as u8;
            }
        }
        let cut = cutout(&rgb, &matte);
        if matches!(template, All | Matting) {
            progress("matting", 45);
            out.push(render(
                "matting.png",
                DynamicImage::ImageRgba8(cut.clone()),
                Format::Png,
                100,
                false,
            )?);
        }
        if matches!(template, All | WhiteBg) {
            progress("white_bg", 60);
            let white = on_white_square(&cut, &rgb)?;
            out.push(render(
                "white-bg.jpg",
                DynamicImage::ImageRgb8(white),
                Format::Jpeg,
                QUALITY,
                false,
            )?);
        }
    }
    if matches!(template, All | Enhanced) {
        progress("enhance", 75);
        let enhanced = enhance(&rgb);
        out.push(render(
            "enhanced.jpg",
            DynamicImage::ImageRgb8(enhanced),
            Format::Jpeg,
            QUALITY,
            false,
        )?);
    }
    progress("done", 100);
    Ok(out)
}

/// Auto levels (per-channel 0.2–99.8 % stretch, gain capped), a gentle S-curve, then an unsharp mask.
fn enhance(rgb: &RgbImage) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let mut hist = [[0u64; 256]; 3];
    for p in rgb.pixels() {
        for c in 0..3 {
            hist[c][usize::from(p.0[c])] += 1;
        }
    }
    let total = u64::from(w) * u64::from(h);
    let bounds: [(f32, f32); 3] = std::array::from_fn(|c| percentiles(&hist[c], total));
    let shared_lo = bounds.iter().map(|b| b.0).fold(255.0, f32::min);
    let shared_hi = bounds.iter().map(|b| b.1).fold(0.0, f32::max);
    let luts: [[u8; 256]; 3] = std::array::from_fn(|c| {
        // Halfway between the channel's own range and the shared one: levels get fixed, a colour
        // cast gets corrected partly, and a strongly coloured product keeps its colour.
        let lo = (bounds[c].0 + shared_lo) / 2.0;
        let hi = (bounds[c].1 + shared_hi) / 2.0;
        // Never stretch more than 2x, so a low-contrast photo is not turned into noise.
        let (lo, hi) = if hi - lo < 128.0 {
            let mid = (lo + hi) / 2.0;
            (mid - 64.0, mid + 64.0)
        } else {
            (lo, hi)
        };
        std::array::from_fn(|v| {
            let t = ((v as f32 - lo) / (hi - lo)).clamp(0.0, 1.0);
            let s = t + 0.15 * (t * t * (3.0 - 2.0 * t) - t);
            (s * 255.0).round() as u8
        })
    });
    let mut levelled = rgb.clone();
    for p in levelled.pixels_mut() {
        for c in 0..3 {
            p.0[c] = luts[c][usize::from(p.0[c])];
        }
    }
    let radius = (w.max(h) / 1000).max(1) as usize;
    let (wu, hu) = (w as usize, h as usize);
    let blurred = box_blur(
        &box_blur(levelled.as_raw(), wu, hu, 3, radius),
        wu,
        hu,
        3,
        radius,
    );
    for (v, &b) in levelled.iter_mut().zip(&blurred) {
        let detail = f32::from(*v) - f32::from(b);
        if detail.abs() > 2.0 {
            *v = (f32::from(*v) + 0.6 * detail).clamp(0.0, 255.0).round() as u8;
        }
    }
    levelled
}

/// The 0.2 % and 99.8 % points of a histogram.
fn percentiles(hist: &[u64; 256], total: u64) -> (f32, f32) {
    let cut = total / 500;
    let mut acc = 0;
    let mut lo = 0;
    for (v, &n) in hist.iter().enumerate() {
        acc += n;
        if acc > cut {
            lo = v;
            break;
        }
    }
    acc = 0;
    let mut hi = 255;
    for (v, &n) in hist.iter().enumerate().rev() {
        acc += n;
        if acc > cut {
            hi = v;
            break;
        }
    }
    (lo as f32, hi.max(lo + 1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient, product_photo};
    use image::ImageFormat;

    fn run(bytes: &[u8], template: CleanTemplate) -> Vec<Rendered> {
        basic_clean(bytes, template, &Limits::default(), &mut |_, _| {}).expect("basic_clean")
    }

    fn load(r: &Rendered) -> DynamicImage {
        let img = image::load_from_memory(&r.data).expect("decodable output");
        assert_eq!(
            (img.width(), img.height()),
            (r.width, r.height),
            "{}",
            r.name
        );
        img
    }

    #[test]
    fn all_makes_three_outputs_in_order() {
        let src = encode(&product_photo(240, 180), ImageFormat::Jpeg);
        let out = run(&src, CleanTemplate::All);
        let names: Vec<_> = out.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["matting.png", "white-bg.jpg", "enhanced.jpg"]);
        let formats: Vec<_> = out.iter().map(|r| r.format).collect();
        assert_eq!(formats, [Format::Png, Format::Jpeg, Format::Jpeg]);
        for r in &out {
            load(r);
            assert!(r.thumbnail.width <= 256 && r.thumbnail.height <= 256);
        }
        assert_eq!(out[0].thumbnail.format, Format::Png);
        assert_eq!(out[2].thumbnail.format, Format::Jpeg);
    }

    #[test]
    fn each_template_makes_its_own_output() {
        let src = encode(&product_photo(120, 90), ImageFormat::Png);
        for (t, name) in [
            (CleanTemplate::Matting, "matting.png"),
            (CleanTemplate::WhiteBg, "white-bg.jpg"),
            (CleanTemplate::Enhanced, "enhanced.jpg"),
        ] {
            let out = run(&src, t);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].name, name);
        }
    }

    #[test]
    fn matting_is_transparent_around_an_opaque_product() {
        let src = encode(&product_photo(240, 180), ImageFormat::Jpeg);
        let m = load(&run(&src, CleanTemplate::Matting)[0]).into_rgba8();
        assert_eq!(m.dimensions(), (240, 180));
        for (x, y) in [(0, 0), (239, 0), (0, 179), (239, 179)] {
            assert_eq!(m.get_pixel(x, y).0[3], 0, "corner ({x},{y})");
        }
        let centre = m.get_pixel(120, 90).0;
        assert_eq!(centre[3], 255);
        assert!(
            centre[0] > 100 && centre[1] < 90,
            "the product is red: {centre:?}"
        );
    }

    #[test]
    fn white_bg_is_a_white_square_with_the_product_in_the_middle() {
        let src = encode(&product_photo(240, 180), ImageFormat::Jpeg);
        let r = &run(&src, CleanTemplate::WhiteBg)[0];
        let img = load(r).into_rgb8();
        let s = img.width();
        assert_eq!(img.height(), s);
        for (x, y) in [(1, 1), (s - 2, 1), (1, s - 2), (s - 2, s - 2)] {
            let p = img.get_pixel(x, y).0;
            assert!(p.iter().all(|&c| c >= 250), "corner ({x},{y}) {p:?}");
        }
        let p = img.get_pixel(s / 2, s / 2).0;
        assert!(p[0] > 100 && p[1] < 90, "centre {p:?}");
        // The product fills the square up to the margin: 10 % white on the widest side.
        let row = s / 2;
        let first = (0..s)
            .find(|&x| img.get_pixel(x, row).0[1] < 200)
            .expect("product in row");
        assert!(
            (s / 14..=s / 8).contains(&first),
            "left margin {first} of {s}"
        );
    }

    #[test]
    fn enhanced_keeps_the_size_and_stretches_levels() {
        let dull = DynamicImage::ImageRgb8(RgbImage::from_fn(100, 80, |x, y| {
            let v = 90 + ((x + y) % 60) as u8;
            image::Rgb([v, v, v])
        }));
        let r = &run(&encode(&dull, ImageFormat::Png), CleanTemplate::Enhanced)[0];
        let img = load(r).into_rgb8();
        assert_eq!(img.dimensions(), (100, 80));
        let (min, max) = img
            .pixels()
            .fold((255, 0), |(lo, hi), p| (p.0[0].min(lo), p.0[0].max(hi)));
        assert!(max - min > 90, "range {min}..{max} was 90..149");
    }

    #[test]
    fn progress_rises_through_the_stages() {
        let src = encode(&gradient(64, 64), ImageFormat::Png);
        let mut seen = Vec::new();
        basic_clean(&src, CleanTemplate::All, &Limits::default(), &mut |s, p| {
            seen.push((s.to_string(), p))
        })
        .expect("clean");
        let stages: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
        for want in ["decode", "matting", "white_bg", "enhance"] {
            assert!(stages.contains(&want), "{stages:?}");
        }
        assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
        assert_eq!(seen.last().map(|s| s.1), Some(100));
    }

    #[test]
    fn extreme_shapes_and_plain_images_do_not_break_it() {
        for img in [
            gradient(15, 6000),
            gradient(6000, 15),
            DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 40, image::Rgb([230, 230, 230]))),
        ] {
            let out = run(&encode(&img, ImageFormat::Png), CleanTemplate::All);
            assert_eq!(out.len(), 3);
            for r in &out {
                load(r);
                assert!(r.thumbnail.width.max(r.thumbnail.height) <= 256);
            }
        }
    }

    #[test]
    fn bad_input_is_refused_before_any_work() {
        let err = basic_clean(
            b"not an image",
            CleanTemplate::All,
            &Limits::default(),
            &mut |_, _| {},
        );
        assert_eq!(err.expect_err("text").code(), 3003);
    }
}
