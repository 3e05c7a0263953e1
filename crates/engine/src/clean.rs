//! The `basic_clean` kind: matting.png, white-bg.jpg and enhanced.jpg.
//!
//! The subject is found by one of two methods ([`Matting`]): a segmentation model (run by the
//! caller, which hands back its low-resolution mask; see `refine.rs` for how it becomes a
//! full-resolution alpha), or the classical estimate for products on plain backgrounds: the
//! background colour is estimated from the image border and everything that differs enough from it
//! is the product (see `matte.rs`). Either way the method rates its own result, and a cut-out below
//! the caller's `min_confidence` is refused (3010) instead of delivered broken.

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::cutout::{cutout, on_white_square};
use crate::decode::decode;
use crate::encode::{flatten_on_white, render};
use crate::filter::box_blur;
use crate::matte::estimate;
use crate::refine::{cutout_with_alpha, refine, SegmentationMask};
use crate::{CleanTemplate, EngineError, Format, Limits, Rendered};

/// JPEG quality of white-bg.jpg and enhanced.jpg.
const QUALITY: u8 = 90;

/// How `basic_clean` finds the subject.
pub enum Matting<'a> {
    /// The classical border-colour estimate; only right on plain backgrounds.
    Classical {
        /// Below this confidence (0..1) the task fails with 3010.
        min_confidence: f32,
    },
    /// A segmentation model or a remote matting service, run by the caller on the decoded,
    /// upright photo; it answers a mask at any resolution.
    Segmented {
        /// What to report as the method: "model" or "remote".
        method: &'a str,
        /// The model's (or service's) name, reported on every output.
        model: &'a str,
        /// Below this confidence (0..1) the task fails with 3010.
        min_confidence: f32,
        /// Runs the model on the photo.
        segment: &'a mut dyn FnMut(&RgbImage) -> Result<SegmentationMask, EngineError>,
    },
}

/// How an output's subject was cut out.
#[derive(Clone, Debug, PartialEq)]
pub struct MattingReport {
    /// "classical", "model" or "remote".
    pub method: String,
    /// The model or service used; empty for the classical method.
    pub model: String,
    /// The method's own rating of this cut-out, 0..1.
    pub confidence: f32,
}

/// `basic_clean` with the classical method and no confidence floor (the engine alone; the
/// processor chooses the method with [`basic_clean_with`]).
pub fn basic_clean(
    bytes: &[u8],
    template: CleanTemplate,
    limits: &Limits,
    progress: &mut dyn FnMut(&str, u32),
) -> Result<Vec<Rendered>, EngineError> {
    let matting = Matting::Classical {
        min_confidence: 0.0,
    };
    basic_clean_with(bytes, template, matting, limits, progress)
}

/// `progress(stage, percent)` is called as work advances ("decode", "matting", "white_bg", "enhance").
pub fn basic_clean_with(
    bytes: &[u8],
    template: CleanTemplate,
    matting: Matting<'_>,
    limits: &Limits,
    progress: &mut dyn FnMut(&str, u32),
) -> Result<Vec<Rendered>, EngineError> {
    use CleanTemplate::{All, Enhanced, Matting as MattingOnly, WhiteBg};
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
    let mut report = None;
    if template != Enhanced {
        progress("matting", 20);
        let (cut, how) = cut_out(&rgb, source_alpha.as_ref(), matting, progress)?;
        if matches!(template, All | MattingOnly) {
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
        report = Some(how);
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
    for r in &mut out {
        r.matting = report.clone();
    }
    progress("done", 100);
    Ok(out)
}

/// The subject on transparency by the chosen method, and how it was made; refuses (3010) a
/// cut-out its method does not trust enough.
fn cut_out(
    rgb: &RgbImage,
    source_alpha: Option<&GrayImage>,
    matting: Matting<'_>,
    progress: &mut dyn FnMut(&str, u32),
) -> Result<(RgbaImage, MattingReport), EngineError> {
    let keep_source_alpha = |alpha: &mut GrayImage| {
        if let Some(src) = source_alpha {
            for (a, s) in alpha.pixels_mut().zip(src.pixels()) {
                a.0[0] = ((u16::from(a.0[0]) * u16::from(s.0[0]) + 127) / 255) as u8;
            }
        }
    };
    match matting {
        Matting::Classical { min_confidence } => {
            let mut matte = estimate(rgb)?;
            if matte.confidence < min_confidence {
                return Err(EngineError::MattingUncertain(format!(
                    "the classical cut-out is not reliable on this photo (confidence {:.2}, \
                     below {min_confidence:.2}): it needs a plain background. Configure a \
                     segmentation model (--matting-model) or a matting provider on the \
                     processor, or lower min_confidence",
                    matte.confidence
                )));
            }
            keep_source_alpha(&mut matte.alpha);
            let how = MattingReport {
                method: "classical".into(),
                model: String::new(),
                confidence: matte.confidence,
            };
            Ok((cutout(rgb, &matte), how))
        }
        Matting::Segmented {
            method,
            model,
            min_confidence,
            segment,
        } => {
            let mask = segment(rgb)?;
            progress("matting", 35);
            let confidence = mask.confidence();
            if confidence < min_confidence {
                return Err(EngineError::MattingUncertain(format!(
                    "{model} found no clear subject in this photo (confidence {confidence:.2}, \
                     below {min_confidence:.2})"
                )));
            }
            let mut alpha = refine(&mask, rgb)?;
            keep_source_alpha(&mut alpha);
            let how = MattingReport {
                method: method.into(),
                model: model.into(),
                confidence,
            };
            Ok((cutout_with_alpha(rgb, &alpha)?, how))
        }
    }
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

    /// A busy scene: a texture everywhere, no plain backdrop to measure against.
    fn busy_scene(w: u32, h: u32) -> DynamicImage {
        let mut seed = 7u32;
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let grain = (seed >> 25) as u8;
            let plank = ((x / 13 + y / 29) % 3) as u8 * 40;
            image::Rgb([90 + plank + grain / 2, 60 + grain / 3, 30 + plank / 2])
        }))
    }

    #[test]
    fn the_classical_method_rates_itself_and_refuses_a_busy_scene() {
        let plain = encode(&product_photo(240, 180), ImageFormat::Jpeg);
        let out = run(&plain, CleanTemplate::All);
        let report = out[0].matting.clone().expect("a report");
        assert_eq!(
            (report.method.as_str(), report.model.as_str()),
            ("classical", "")
        );
        assert!(
            report.confidence > 0.7,
            "plain backdrop: {}",
            report.confidence
        );
        assert!(out.iter().all(|r| r.matting.as_ref() == Some(&report)));

        let busy = encode(&busy_scene(240, 180), ImageFormat::Jpeg);
        let strict = Matting::Classical {
            min_confidence: 0.5,
        };
        let err = basic_clean_with(
            &busy,
            CleanTemplate::All,
            strict,
            &Limits::default(),
            &mut |_, _| {},
        )
        .expect_err("a busy scene is not cut out classically");
        assert_eq!(err.code(), 3010);
        assert!(err.to_string().contains("--matting-model"), "{err}");
        // Without a floor the same photo is delivered, and says how little it is worth.
        let loose = run(&busy, CleanTemplate::Matting);
        let c = loose[0]
            .matting
            .as_ref()
            .map(|m| m.confidence)
            .unwrap_or(1.0);
        assert!(c < 0.5, "busy scene rated {c}");
        // enhanced alone needs no cut-out and reports none.
        assert!(run(&busy, CleanTemplate::Enhanced)[0].matting.is_none());
    }

    #[test]
    fn a_segmentation_mask_drives_the_cut_out_and_is_reported() {
        let src = encode(&busy_scene(300, 200), ImageFormat::Png);
        // The "model" says: the left half is the subject.
        let mut seen = None;
        let mut segment = |rgb: &RgbImage| {
            seen = Some(rgb.dimensions());
            let values = (0..64 * 64)
                .map(|i| if i % 64 < 32 { 1.0 } else { 0.0 })
                .collect();
            SegmentationMask::new(64, 64, values)
        };
        let matting = Matting::Segmented {
            method: "model",
            model: "isnet-test",
            min_confidence: 0.5,
            segment: &mut segment,
        };
        let out = basic_clean_with(
            &src,
            CleanTemplate::All,
            matting,
            &Limits::default(),
            &mut |_, _| {},
        )
        .expect("basic_clean");
        assert_eq!(seen, Some((300, 200)));
        let report = out[0].matting.clone().expect("report");
        assert_eq!(
            (report.method.as_str(), report.model.as_str()),
            ("model", "isnet-test")
        );
        assert!(report.confidence > 0.99);
        let cut = load(&out[0]).into_rgba8();
        assert_eq!(cut.get_pixel(20, 100).0[3], 255);
        assert_eq!(cut.get_pixel(280, 100).0[3], 0);

        // A model that sees nothing is refused, not delivered as an empty cut-out.
        let mut blank = |_: &RgbImage| SegmentationMask::new(8, 8, vec![0.0; 64]);
        let matting = Matting::Segmented {
            method: "model",
            model: "isnet-test",
            min_confidence: 0.5,
            segment: &mut blank,
        };
        let err = basic_clean_with(
            &src,
            CleanTemplate::All,
            matting,
            &Limits::default(),
            &mut |_, _| {},
        )
        .expect_err("nothing found");
        assert_eq!(err.code(), 3010);
    }

    /// The project's sample product (what `make demo` cuts out with the default method) is a plain
    /// backdrop the classical method trusts well above the default floor of 0.5.
    #[test]
    fn the_demo_sample_is_trusted_by_the_classical_method() {
        let sample = include_bytes!("../../../assets/sample-product.jpg");
        let strict = Matting::Classical {
            min_confidence: 0.5,
        };
        let out = basic_clean_with(
            sample,
            CleanTemplate::Matting,
            strict,
            &Limits::default(),
            &mut |_, _| {},
        )
        .expect("the sample is cut out");
        let c = out[0].matting.as_ref().map_or(0.0, |m| m.confidence);
        assert!(c > 0.7, "sample rated {c}");
    }
}
