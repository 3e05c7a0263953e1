//! The `transform` kind: auto-orient, crop, rotate, flip, resize, encode (in that order).

use image::DynamicImage;

use crate::decode::{decode_jpeg_scaled, decode_probed, inspect_checked};
use crate::encode::{render, resize_exact};
use crate::resize::{plan, reduced_decode_size, target_size};
use crate::{Crop, EngineError, Format, Limits, Rendered, Rotation, TransformRecipe};

/// JPEG quality used when the recipe says 0.
const DEFAULT_QUALITY: u8 = 85;

/// `progress(stage, percent)` is called as work advances (stages such as "decode", "resize", "encode").
pub fn transform(
    bytes: &[u8],
    recipe: &TransformRecipe,
    limits: &Limits,
    progress: &mut dyn FnMut(&str, u32),
) -> Result<Vec<Rendered>, EngineError> {
    if recipe.quality > 100 {
        return Err(EngineError::InvalidRecipe(format!(
            "quality {} is out of range; use 1 to 100",
            recipe.quality
        )));
    }
    progress("decode", 0);
    // One header walk serves the checks, the plan and the decoder.
    let probed = inspect_checked(bytes, limits)?;
    check_lossless(recipe, recipe.format.unwrap_or(probed.info.format))?;
    let planned = plan(&probed, recipe, limits)?;
    let quality = if recipe.quality == 0 {
        DEFAULT_QUALITY
    } else {
        recipe.quality
    };
    #[cfg(feature = "turbojpeg")]
    if let Some((p, (w, h))) =
        planned.and_then(|p| Some((p, reduced_decode_size(&probed.info, p)?)))
    {
        if let Some(denom) = crate::decode::scale_denominator(&probed.info, w, h) {
            let shortcut = crate::fastpath::jpeg_to_jpeg(
                bytes, &probed, recipe, limits, p.target, denom, quality, progress,
            );
            if let Some(rendered) = shortcut {
                progress("done", 100);
                return Ok(vec![rendered]);
            }
        }
    }
    let reduced = match planned.and_then(|p| reduced_decode_size(&probed.info, p)) {
        Some((w, h)) => decode_jpeg_scaled(bytes, &probed, limits, w, h)?,
        None => None,
    };
    // The planned size is used only with the reduced decode it was planned for; otherwise the
    // size is worked out from the full decoder's pixels.
    let (decoded, planned) = match reduced {
        Some(d) => (d, planned),
        None => (decode_probed(bytes, &probed, limits)?, None),
    };
    let source_format = decoded.info.format;
    let mut image = if recipe.auto_orient {
        progress("orient", 30);
        decoded.oriented()
    } else {
        decoded.image
    };
    if let Some(crop) = &recipe.crop {
        progress("crop", 35);
        image = apply_crop(image, crop)?;
    }
    image = match recipe.rotate {
        Rotation::None => image,
        Rotation::R90 => image.rotate90(),
        Rotation::R180 => image.rotate180(),
        Rotation::R270 => image.rotate270(),
    };
    if recipe.flip_horizontal {
        image = image.fliph();
    }
    if recipe.flip_vertical {
        image = image.flipv();
    }
    if let Some(resize) = &recipe.resize {
        progress("resize", 45);
        let (w, h, cover) = match planned {
            Some(p) => p.target,
            None => target_size(image.width(), image.height(), resize, limits)?,
        };
        image = resize_exact(&image, w, h, cover)?;
    }
    progress("encode", 75);
    let format = recipe.format.unwrap_or(source_format);
    check_encodable(image.width(), image.height(), format)?;
    let name = format!("image.{}", format.extension());
    let rendered = render(&name, image, format, quality, recipe.lossless)?;
    progress("done", 100);
    Ok(vec![rendered])
}

/// Lossless output exists for WebP (and PNG, which is always lossless), not for JPEG.
fn check_lossless(recipe: &TransformRecipe, format: Format) -> Result<(), EngineError> {
    if recipe.lossless && format == Format::Jpeg {
        return Err(EngineError::InvalidRecipe(
            "JPEG has no lossless mode; choose WebP or PNG for lossless output".into(),
        ));
    }
    Ok(())
}

/// JPEG stores sides in 16 bits and WebP in 14; say so instead of failing inside the encoder.
fn check_encodable(w: u32, h: u32, format: Format) -> Result<(), EngineError> {
    let max = match format {
        Format::Jpeg => 65_535,
        Format::Webp => 16_383,
        Format::Png => return Ok(()),
    };
    if w > max || h > max {
        return Err(EngineError::InvalidRecipe(format!(
            "a {w}x{h} image cannot be written as {}: its sides are limited to {max} pixels; \
             resize it or choose PNG",
            format.extension()
        )));
    }
    Ok(())
}

/// Cuts the rectangle out, refusing one that is empty or reaches outside the image.
fn apply_crop(image: DynamicImage, c: &Crop) -> Result<DynamicImage, EngineError> {
    let (w, h) = (image.width(), image.height());
    let inside = u64::from(c.x) + u64::from(c.width) <= u64::from(w)
        && u64::from(c.y) + u64::from(c.height) <= u64::from(h);
    if c.width == 0 || c.height == 0 || !inside {
        return Err(EngineError::InvalidRecipe(format!(
            "crop {}x{} at ({}, {}) does not fit inside the {w}x{h} image (after auto-orient); \
             the crop must be non-empty and within the image",
            c.width, c.height, c.x, c.y
        )));
    }
    if (c.x, c.y, c.width, c.height) == (0, 0, w, h) {
        return Ok(image);
    }
    Ok(image.crop_imm(c.x, c.y, c.width, c.height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient, jpeg_with_orientation};
    use crate::{Fit, Resize};
    use image::{GenericImageView, ImageFormat, Rgb, RgbImage};

    fn run(bytes: &[u8], recipe: &TransformRecipe) -> Result<Rendered, EngineError> {
        let mut out = transform(bytes, recipe, &Limits::default(), &mut |_, _| {})?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    fn resized(w: u32, h: u32, fit: Fit) -> TransformRecipe {
        TransformRecipe {
            resize: Some(Resize {
                width: w,
                height: h,
                fit,
            }),
            ..TransformRecipe::default()
        }
    }

    fn dims(r: &Rendered) -> (u32, u32) {
        let img = image::load_from_memory(&r.data).expect("decodable");
        assert_eq!((img.width(), img.height()), (r.width, r.height));
        (r.width, r.height)
    }

    #[test]
    fn each_fit_mode_gives_the_expected_size() {
        let src = encode(&gradient(400, 200), ImageFormat::Png);
        let cases = [
            (Fit::Contain, 100, 100, (100, 50)),
            (Fit::Contain, 1000, 1000, (1000, 500)),
            (Fit::Inside, 100, 100, (100, 50)),
            (Fit::Inside, 1000, 1000, (400, 200)),
            (Fit::Cover, 100, 100, (100, 100)),
            (Fit::Fill, 123, 77, (123, 77)),
            (Fit::Contain, 200, 0, (200, 100)),
            (Fit::Contain, 0, 50, (100, 50)),
            (Fit::Inside, 800, 0, (400, 200)),
            (Fit::Cover, 0, 400, (800, 400)),
        ];
        for (fit, w, h, want) in cases {
            let r = run(&src, &resized(w, h, fit)).expect("resize");
            assert_eq!(dims(&r), want, "{fit:?} {w}x{h}");
        }
    }

    #[test]
    fn cover_crops_the_centre() {
        // Left third red, middle green, right third blue: cover to a square keeps the green middle.
        let img = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let src = encode(&image::DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let r = run(&src, &resized(50, 50, Fit::Cover)).expect("cover");
        let out = image::load_from_memory(&r.data).expect("png").to_rgb8();
        for x in [2, 25, 47] {
            let p = out.get_pixel(x, 25).0;
            assert!(p[1] > 200 && p[0] < 40 && p[2] < 40, "x={x}: {p:?}");
        }
    }

    #[test]
    fn resize_needs_a_side_and_a_sane_size() {
        let src = encode(&gradient(40, 40), ImageFormat::Png);
        assert_eq!(
            run(&src, &resized(0, 0, Fit::Fill))
                .expect_err("0x0")
                .code(),
            1003
        );
        let err = run(&src, &resized(100_000, 100_000, Fit::Fill)).expect_err("huge");
        assert_eq!(err.code(), 1003);
        assert!(err.to_string().contains("over the 50 MP limit"), "{err}");
    }

    #[test]
    fn crop_inside_works_and_outside_is_refused() {
        let src = encode(&gradient(100, 80), ImageFormat::Png);
        let crop = |x, y, width, height| TransformRecipe {
            crop: Some(Crop {
                x,
                y,
                width,
                height,
            }),
            ..TransformRecipe::default()
        };
        assert_eq!(
            dims(&run(&src, &crop(10, 20, 50, 40)).expect("crop")),
            (50, 40)
        );
        assert_eq!(
            dims(&run(&src, &crop(0, 0, 100, 80)).expect("whole")),
            (100, 80)
        );
        for bad in [
            crop(60, 0, 50, 10),
            crop(0, 70, 10, 11),
            crop(0, 0, 0, 10),
            crop(u32::MAX, 0, 2, 2),
        ] {
            let err = run(&src, &bad).expect_err("outside");
            assert_eq!(err.code(), 1003, "{err}");
        }
    }

    #[test]
    fn rotation_swaps_dimensions_and_moves_pixels() {
        let mut img = RgbImage::from_pixel(60, 30, Rgb([0, 0, 0]));
        img.put_pixel(0, 0, Rgb([255, 255, 255]));
        let src = encode(&image::DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let rot = |rotate| TransformRecipe {
            rotate,
            ..TransformRecipe::default()
        };
        let r90 = run(&src, &rot(Rotation::R90)).expect("r90");
        assert_eq!(dims(&r90), (30, 60));
        // After 90° clockwise the top-left pixel is at the top-right.
        let out = image::load_from_memory(&r90.data).expect("png");
        assert!(out.get_pixel(29, 0).0[0] > 200);
        assert_eq!(
            dims(&run(&src, &rot(Rotation::R180)).expect("r180")),
            (60, 30)
        );
        assert_eq!(
            dims(&run(&src, &rot(Rotation::R270)).expect("r270")),
            (30, 60)
        );
    }

    #[test]
    fn flips_mirror_the_image() {
        let mut img = RgbImage::from_pixel(20, 20, Rgb([0, 0, 0]));
        img.put_pixel(0, 0, Rgb([255, 255, 255]));
        let src = encode(&image::DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let recipe = TransformRecipe {
            flip_horizontal: true,
            flip_vertical: true,
            ..TransformRecipe::default()
        };
        let out = image::load_from_memory(&run(&src, &recipe).expect("flip").data).expect("png");
        assert!(out.get_pixel(19, 19).0[0] > 200);
        assert!(out.get_pixel(0, 0).0[0] < 50);
    }

    #[test]
    fn exif_orientation_6_is_applied_unless_turned_off() {
        // Stored 40x20 with a bright left edge; orientation 6 means "rotate 90° clockwise to view".
        let img = RgbImage::from_fn(
            40,
            20,
            |x, _| if x < 5 { Rgb([255; 3]) } else { Rgb([0; 3]) },
        );
        let jpeg = jpeg_with_orientation(&image::DynamicImage::ImageRgb8(img), 6);
        let r = run(&jpeg, &TransformRecipe::default()).expect("orient");
        assert_eq!(dims(&r), (20, 40));
        let out = image::load_from_memory(&r.data).expect("jpeg").to_rgb8();
        assert!(
            out.get_pixel(10, 1).0[0] > 200,
            "left edge is now at the top"
        );
        assert!(out.get_pixel(10, 38).0[0] < 60);
        let off = TransformRecipe {
            auto_orient: false,
            ..TransformRecipe::default()
        };
        assert_eq!(dims(&run(&jpeg, &off).expect("as stored")), (40, 20));
    }

    #[test]
    fn format_follows_the_source_or_the_recipe() {
        let png = encode(&gradient(30, 30), ImageFormat::Png);
        let r = run(&png, &TransformRecipe::default()).expect("png");
        assert_eq!((r.name.as_str(), r.format), ("image.png", Format::Png));
        for (format, name) in [(Format::Jpeg, "image.jpg"), (Format::Webp, "image.webp")] {
            let recipe = TransformRecipe {
                format: Some(format),
                ..TransformRecipe::default()
            };
            let r = run(&png, &recipe).expect("convert");
            assert_eq!(r.name, name);
            assert_eq!(
                image::guess_format(&r.data).expect("guess"),
                crate::decode::image_format(format)
            );
        }
    }

    #[test]
    fn alpha_is_flattened_on_white_for_jpeg_and_kept_for_png() {
        let rgba = image::RgbaImage::from_fn(30, 30, |x, _| {
            image::Rgba([0, 0, 0, if x < 15 { 0 } else { 255 }])
        });
        let src = encode(&image::DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
        let jpeg = TransformRecipe {
            format: Some(Format::Jpeg),
            ..TransformRecipe::default()
        };
        let r = run(&src, &jpeg).expect("jpeg");
        let out = image::load_from_memory(&r.data).expect("jpeg").to_rgb8();
        assert!(out.get_pixel(3, 15).0.iter().all(|&c| c > 240));
        assert!(out.get_pixel(27, 15).0.iter().all(|&c| c < 20));
        assert_eq!(r.thumbnail.format, Format::Jpeg);
        let png = run(&src, &TransformRecipe::default()).expect("png");
        let out = image::load_from_memory(&png.data).expect("png");
        assert_eq!(out.get_pixel(3, 15).0[3], 0);
        assert_eq!(png.thumbnail.format, Format::Png);
    }

    /// The chunk after the RIFF/WEBP header: "VP8 " (lossy), "VP8L" (lossless) or "VP8X".
    fn webp_kind(data: &[u8]) -> &[u8] {
        assert_eq!((&data[0..4], &data[8..12]), (&b"RIFF"[..], &b"WEBP"[..]));
        &data[12..16]
    }

    #[test]
    fn webp_is_lossy_at_the_quality_and_lossless_only_when_asked() {
        let photo = include_bytes!("../../../assets/sample-product.jpg");
        let to_webp = |quality: u8, lossless: bool| {
            let recipe = TransformRecipe {
                format: Some(Format::Webp),
                quality,
                lossless,
                ..resized(800, 0, Fit::Inside)
            };
            run(photo, &recipe).expect("webp")
        };
        let q30 = to_webp(30, false);
        let q75 = to_webp(75, false);
        let q90 = to_webp(90, false);
        let lossless = to_webp(75, true);
        let q100 = to_webp(100, false);
        for r in [&q30, &q75, &q90] {
            assert_eq!(webp_kind(&r.data), b"VP8 ");
            assert_eq!(dims(r), (800, 600));
        }
        assert_eq!(webp_kind(&lossless.data), b"VP8L");
        assert_eq!(webp_kind(&q100.data), b"VP8L");
        assert!(q30.data.len() < q75.data.len() && q75.data.len() < q90.data.len());
        assert!(
            q75.data.len() * 4 < lossless.data.len(),
            "q75 {} bytes, lossless {} bytes",
            q75.data.len(),
            lossless.data.len()
        );
        assert_eq!(
            image::load_from_memory(&lossless.data).expect("lossless"),
            image::load_from_memory(&q100.data).expect("q100"),
            "quality 100 is the same lossless encoding"
        );
    }

    #[test]
    fn transparent_pixels_stay_transparent_in_lossy_webp() {
        let rgba = image::RgbaImage::from_fn(60, 40, |x, y| {
            image::Rgba([200, (y * 6) as u8, 40, if x < 20 { 0 } else { 255 }])
        });
        let src = encode(&image::DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
        let recipe = TransformRecipe {
            format: Some(Format::Webp),
            quality: 60,
            ..TransformRecipe::default()
        };
        let r = run(&src, &recipe).expect("webp");
        assert_eq!(webp_kind(&r.data), b"VP8X");
        let out = image::load_from_memory(&r.data).expect("webp").to_rgba8();
        assert_eq!(out.get_pixel(5, 20).0[3], 0);
        assert_eq!(out.get_pixel(40, 20).0[3], 255);
        assert_eq!(r.thumbnail.format, Format::Png);
    }

    #[test]
    fn lossless_jpeg_is_refused_and_lossless_png_is_fine() {
        let jpeg = encode(&gradient(40, 30), ImageFormat::Jpeg);
        let lossless = TransformRecipe {
            lossless: true,
            ..TransformRecipe::default()
        };
        let err = run(&jpeg, &lossless).expect_err("the source format is JPEG");
        assert_eq!(err.code(), 1003);
        assert!(err.to_string().contains("lossless"), "{err}");
        let to_jpeg = TransformRecipe {
            format: Some(Format::Jpeg),
            ..lossless.clone()
        };
        assert_eq!(run(&jpeg, &to_jpeg).expect_err("jpeg").code(), 1003);
        let to_png = TransformRecipe {
            format: Some(Format::Png),
            ..lossless
        };
        assert_eq!(run(&jpeg, &to_png).expect("png").format, Format::Png);
    }

    #[test]
    fn progress_rises_to_100() {
        let src = encode(&gradient(300, 200), ImageFormat::Jpeg);
        let mut seen = Vec::new();
        transform(
            &src,
            &resized(64, 0, Fit::Contain),
            &Limits::default(),
            &mut |s, p| seen.push((s.to_string(), p)),
        )
        .expect("transform");
        assert_eq!(seen.first().map(|s| s.1), Some(0));
        assert_eq!(seen.last().map(|s| s.1), Some(100));
        assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
        assert!(seen.iter().any(|(s, _)| s == "resize"));
    }

    #[test]
    fn a_large_jpeg_shrunk_a_lot_is_decoded_at_reduced_scale_correctly() {
        // Stored 800x400 with orientation 6 (viewed 400x800); a resize to 100 wide lets the decoder
        // work at 1/4 scale. The output must match the full-size path's geometry.
        let img = RgbImage::from_fn(
            800,
            400,
            |x, _| if x < 100 { Rgb([255; 3]) } else { Rgb([0; 3]) },
        );
        let jpeg = jpeg_with_orientation(&image::DynamicImage::ImageRgb8(img), 6);
        let probed = inspect_checked(&jpeg, &Limits::default()).expect("probe");
        let recipe = resized(100, 0, Fit::Contain);
        let p = plan(&probed, &recipe, &Limits::default())
            .expect("plan")
            .expect("jpeg");
        assert_eq!(p.target, (100, 200, false));
        assert_eq!(reduced_decode_size(&probed.info, p), Some((200, 100)));
        let r = run(&jpeg, &recipe).expect("resize");
        assert_eq!(dims(&r), (100, 200));
        let out = image::load_from_memory(&r.data).expect("jpeg").to_rgb8();
        assert!(
            out.get_pixel(50, 5).0[0] > 200,
            "the bright stored-left edge is on top"
        );
        assert!(out.get_pixel(50, 100).0[0] < 50);
        // Cover and fill still get their exact boxes.
        assert_eq!(
            dims(&run(&jpeg, &resized(60, 60, Fit::Cover)).expect("cover")),
            (60, 60)
        );
        assert_eq!(
            dims(&run(&jpeg, &resized(90, 30, Fit::Fill)).expect("fill")),
            (90, 30)
        );
    }

    #[test]
    fn sides_the_output_format_cannot_store_are_refused() {
        let src = encode(&gradient(20_000, 20), ImageFormat::Png);
        let webp = TransformRecipe {
            format: Some(Format::Webp),
            ..TransformRecipe::default()
        };
        let err = run(&src, &webp).expect_err("too wide for webp");
        assert_eq!(err.code(), 1003, "{err}");
        assert!(err.to_string().contains("16383"), "{err}");
        run(&src, &TransformRecipe::default()).expect("png has no such limit");
    }

    #[test]
    fn bad_inputs_get_their_codes() {
        let r = TransformRecipe::default();
        assert_eq!(run(b"plain text", &r).expect_err("text").code(), 3003);
        let small = encode(&gradient(10, 10), ImageFormat::Png);
        assert_eq!(run(&small, &r).expect_err("small").code(), 3004);
        let bad_q = TransformRecipe {
            quality: 101,
            ..TransformRecipe::default()
        };
        assert_eq!(run(&small, &bad_q).expect_err("quality").code(), 1003);
    }

    /// A camera JPEG's metadata (EXIF with a GPS note, XMP, a comment) reaches no output or
    /// thumbnail, whatever the format and whichever JPEG path (the libjpeg-turbo shortcut when
    /// linked, the general path otherwise) does the work.
    #[test]
    fn no_metadata_of_the_source_reaches_an_output() {
        let photo = crate::testutil::product_photo(640, 480).into_rgb8();
        let mut jpeg = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut jpeg, 90);
        e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        e.encode(photo.as_raw(), 640, 480, jpeg_encoder::ColorType::Rgb)
            .expect("fixture");
        // Orientation 1 (nothing to apply, so the JPEG shortcut may run) plus a GPS note.
        let exif = jpeg_with_orientation(&DynamicImage::ImageRgb8(photo), 1);
        let app1_len = usize::from(u16::from_be_bytes([exif[4], exif[5]]));
        let mut exif_segment = exif[2..4 + app1_len].to_vec();
        let gps = b"GPS 52.5200N 13.4050E";
        exif_segment.extend_from_slice(gps);
        let len = (exif_segment.len() - 2) as u16;
        exif_segment[2..4].copy_from_slice(&len.to_be_bytes());
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>secret-xmp</x:xmpmeta>";
        let comment = b"secret-comment";
        let mut src = jpeg[..2].to_vec();
        src.extend_from_slice(&exif_segment);
        for (marker, body) in [(0xE1u8, xmp.as_slice()), (0xFE, comment.as_slice())] {
            src.extend_from_slice(&[0xFF, marker]);
            src.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            src.extend_from_slice(body);
        }
        src.extend_from_slice(&jpeg[2..]);
        // The fixture really carries what the outputs must not.
        let found = |data: &[u8], what: &[u8]| data.windows(what.len()).any(|w| w == what);
        for what in [&b"Exif\0\0"[..], gps, b"secret-xmp", comment] {
            assert!(found(&src, what));
        }
        for format in [Format::Jpeg, Format::Png, Format::Webp] {
            let recipe = TransformRecipe {
                resize: Some(Resize {
                    width: 160,
                    height: 0,
                    fit: Fit::Inside,
                }),
                format: Some(format),
                ..TransformRecipe::default()
            };
            let out =
                transform(&src, &recipe, &Limits::default(), &mut |_, _| {}).expect("transform");
            for data in [&out[0].data, &out[0].thumbnail.data] {
                for what in [
                    &b"Exif"[..],
                    gps,
                    b"secret-xmp",
                    b"xmpmeta",
                    comment,
                    b"eXIf",
                ] {
                    assert!(
                        !found(data, what),
                        "{format:?}: {:?} in the output",
                        String::from_utf8_lossy(what)
                    );
                }
            }
        }
    }
}
