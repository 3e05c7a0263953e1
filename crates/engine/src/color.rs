//! Colour: what the engine does with embedded ICC profiles and with CMYK JPEGs.
//!
//! Outputs carry no metadata (no ICC profile), and viewers read untagged images as sRGB, so pixels
//! are brought to sRGB when the source says they are in something else:
//!
//! - **RGB ICC profiles** (JPEG APP2, PNG iCCP, WebP ICCP; e.g. Display P3, Adobe RGB) are converted
//!   to sRGB with moxcms (pure Rust, already in the dependency tree through `image`), perceptual
//!   intent, 8-bit. Profiles whose primaries are sRGB's are left alone (no work for the common case),
//!   and a profile that does not parse, or that is not an RGB profile (grey, CMYK, Lab), leaves the
//!   pixels as decoded: a broken profile never fails a job.
//! - **CMYK and YCCK JPEGs** (Adobe APP14; Photoshop stores the inks inverted) are decoded by
//!   jpeg-decoder (scaled when the output allows) and converted here with the naive formula
//!   `R = (255 − C)(255 − K) / 255` (and so on), which is what browsers do without a CMS; an
//!   embedded CMYK profile is not applied. JPEGs with 2 or more than 4 components are refused with
//!   3003 before decoding (see `probe::inspect`).

use image::DynamicImage;
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// RGB from jpeg-decoder's four-channel output, which is ink amounts (C, M, Y, K) for both CMYK
/// and YCCK frames (it undoes Adobe's inversion and the YCC step itself).
pub(crate) fn cmyk_to_rgb(pixels: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(pixels.len() / 4 * 3);
    for p in pixels.chunks_exact(4) {
        let white = 255 - u32::from(p[3]);
        let mix = |ink: u8| (((255 - u32::from(ink)) * white + 127) / 255) as u8;
        rgb.extend_from_slice(&[mix(p[0]), mix(p[1]), mix(p[2])]);
    }
    rgb
}

/// How far (in XYZ) a primary may be from sRGB's and still count as sRGB.
const SRGB_TOLERANCE: f64 = 0.002;

/// Converts 8-bit RGB or RGBA pixels described by `icc` to sRGB in place (see the module docs for
/// when it leaves them alone). Returns true when the pixels changed space.
pub(crate) fn to_srgb(image: &mut DynamicImage, icc: &[u8]) -> bool {
    // The profile is untrusted bytes: a panic inside the CMS leaves the pixels as decoded.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(image, icc))).unwrap_or(false)
}

fn convert(image: &mut DynamicImage, icc: &[u8]) -> bool {
    let Ok(source) = ColorProfile::new_from_slice(icc) else {
        return false;
    };
    if source.color_space != DataColorSpace::Rgb || is_srgb(&source) {
        return false;
    }
    let srgb = ColorProfile::new_srgb();
    let (layout, pixels) = match image {
        DynamicImage::ImageRgb8(buf) => (Layout::Rgb, buf.as_mut()),
        DynamicImage::ImageRgba8(buf) => (Layout::Rgba, buf.as_mut()),
        _ => return false,
    };
    let Ok(transform) =
        source.create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
    else {
        return false;
    };
    let mut out = vec![0u8; pixels.len()];
    if transform.transform(pixels, &mut out).is_err() {
        return false;
    }
    pixels.copy_from_slice(&out);
    true
}

/// A matrix/shaper profile with sRGB's primaries (tone curves are not compared: the usual
/// "sRGB IEC61966-2.1" and its look-alikes differ there only by rounding).
fn is_srgb(profile: &ColorProfile) -> bool {
    let srgb = ColorProfile::new_srgb();
    let close = |a: moxcms::Xyzd, b: moxcms::Xyzd| {
        (a.x - b.x).abs() < SRGB_TOLERANCE
            && (a.y - b.y).abs() < SRGB_TOLERANCE
            && (a.z - b.z).abs() < SRGB_TOLERANCE
    };
    profile.lut_a_to_b_perceptual.is_none()
        && profile.lut_a_to_b_colorimetric.is_none()
        && close(profile.red_colorant, srgb.red_colorant)
        && close(profile.green_colorant, srgb.green_colorant)
        && close(profile.blue_colorant, srgb.blue_colorant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// Display P3 as moxcms writes it (a real, parseable ICC profile).
    pub(crate) fn display_p3_icc() -> Vec<u8> {
        ColorProfile::new_display_p3()
            .encode()
            .expect("moxcms encodes Display P3")
    }

    #[test]
    fn display_p3_red_becomes_a_less_saturated_srgb_red_is_clamped() {
        // P3 pure green is outside sRGB; P3 mid grey stays grey.
        let mut img = DynamicImage::ImageRgb8(RgbImage::from_fn(4, 1, |x, _| match x {
            0 => Rgb([0, 255, 0]),
            1 => Rgb([128, 128, 128]),
            2 => Rgb([200, 60, 40]),
            _ => Rgb([255, 255, 255]),
        }));
        assert!(to_srgb(&mut img, &display_p3_icc()));
        let out = img.to_rgb8();
        let green = out.get_pixel(0, 0).0;
        assert!(
            green[0] < 40 && green[1] > 240 && green[2] < 80,
            "{green:?}"
        );
        let grey = out.get_pixel(1, 0).0;
        assert!(
            grey.iter().all(|&c| c.abs_diff(128) <= 2),
            "grey stays grey: {grey:?}"
        );
        let skin = out.get_pixel(2, 0).0;
        assert!(
            skin[0] > 200,
            "P3 red reads more saturated in sRGB: {skin:?}"
        );
        assert!(out.get_pixel(3, 0).0.iter().all(|&c| c >= 253));
    }

    #[test]
    fn srgb_profiles_and_broken_profiles_leave_pixels_alone() {
        let original = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 3, Rgb([10, 200, 30])));
        let srgb = ColorProfile::new_srgb().encode().expect("encode sRGB");
        let mut img = original.clone();
        assert!(!to_srgb(&mut img, &srgb));
        assert_eq!(img, original);
        for junk in [
            b"".as_slice(),
            b"not an icc profile at all",
            &srgb[..srgb.len() / 3],
        ] {
            let mut img = original.clone();
            assert!(!to_srgb(&mut img, junk));
            assert_eq!(img, original);
        }
    }

    #[test]
    fn grey_profiles_are_not_applied_to_rgb_pixels() {
        let grey = ColorProfile::new_gray_with_gamma(2.2)
            .encode()
            .expect("encode grey");
        let original = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([1, 2, 3])));
        let mut img = original.clone();
        assert!(!to_srgb(&mut img, &grey));
        assert_eq!(img, original);
    }

    fn transform_to(bytes: &[u8], recipe: crate::TransformRecipe) -> image::RgbImage {
        let out = crate::transform(bytes, &recipe, &crate::Limits::default(), &mut |_, _| {})
            .expect("transform");
        image::load_from_memory(&out[0].data)
            .expect("decodable output")
            .to_rgb8()
    }

    fn as_png() -> crate::TransformRecipe {
        crate::TransformRecipe {
            format: Some(crate::Format::Png),
            ..crate::TransformRecipe::default()
        }
    }

    fn near(got: [u8; 3], want: [u8; 3], tolerance: u8) -> bool {
        got.iter()
            .zip(want)
            .all(|(g, w)| g.abs_diff(w) <= tolerance)
    }

    /// Quadrants of inks: cyan, magenta, yellow, half black; a white (no ink) border row.
    fn inks(x: u32, y: u32) -> [u8; 4] {
        match (x / 32, y / 32) {
            (0, 0) => [255, 0, 0, 0],
            (1, 0) => [0, 255, 0, 0],
            (0, 1) => [0, 0, 255, 0],
            _ => [0, 0, 0, 128],
        }
    }

    #[test]
    fn cmyk_and_ycck_jpegs_become_the_right_rgb() {
        for ycck in [false, true] {
            let jpeg = crate::testutil::cmyk_jpeg(64, 64, ycck, inks);
            let header = crate::jpeg::read_header(&jpeg).expect("header");
            assert_eq!(header.components, 4);
            assert_eq!(header.adobe_transform, Some(if ycck { 2 } else { 0 }));
            let out = transform_to(&jpeg, as_png());
            assert_eq!(out.dimensions(), (64, 64));
            for (x, y, want) in [
                (16, 16, [0, 255, 255]),
                (48, 16, [255, 0, 255]),
                (16, 48, [255, 255, 0]),
                (48, 48, [127, 127, 127]),
            ] {
                let got = out.get_pixel(x, y).0;
                assert!(
                    near(got, want, 12),
                    "ycck={ycck} at {x},{y}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn a_cmyk_jpeg_shrunk_a_lot_still_decodes_in_colour() {
        // Big enough that a reduced decode would be planned; CMYK takes the full decoder instead.
        let jpeg = crate::testutil::cmyk_jpeg(256, 256, false, |x, y| inks(x / 4, y / 4));
        let recipe = crate::TransformRecipe {
            resize: Some(crate::Resize {
                width: 32,
                height: 0,
                fit: crate::Fit::Contain,
            }),
            ..as_png()
        };
        let out = transform_to(&jpeg, recipe);
        assert_eq!(out.dimensions(), (32, 32));
        assert!(near(out.get_pixel(4, 4).0, [0, 255, 255], 16));
        assert!(near(out.get_pixel(28, 4).0, [255, 0, 255], 16));
    }

    #[test]
    fn jpegs_with_two_or_five_components_are_refused_as_unsupported() {
        for components in [2u8, 5] {
            let mut jpeg = vec![
                0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x40, 0x00, 0x40,
            ];
            jpeg.push(components);
            jpeg.extend_from_slice(&[1, 0x11, 0]);
            let err = crate::probe(&jpeg, &crate::Limits::default()).expect_err("refused");
            assert_eq!(err.code(), 3003, "{err}");
            assert!(err.to_string().contains("colour components"), "{err}");
        }
    }

    #[test]
    fn an_embedded_display_p3_profile_is_converted_in_every_format_and_path() {
        use image::ImageFormat;
        let icc = display_p3_icc();
        let src = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([200, 60, 40])));
        let plain_red = transform_to(&crate::testutil::encode(&src, ImageFormat::Png), as_png())
            .get_pixel(8, 8)
            .0[0];
        for fmt in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let tagged = crate::testutil::encode_with_icc(&src, fmt, &icc);
            let red = transform_to(&tagged, as_png()).get_pixel(8, 8).0[0];
            assert!(
                red >= plain_red + 10,
                "{fmt:?}: P3 red {red} must read redder than untagged {plain_red}"
            );
        }
        // The reduced JPEG decode applies it too.
        let tagged = crate::testutil::encode_with_icc(&src, ImageFormat::Jpeg, &icc);
        let recipe = crate::TransformRecipe {
            resize: Some(crate::Resize {
                width: 16,
                height: 0,
                fit: crate::Fit::Contain,
            }),
            ..as_png()
        };
        let red = transform_to(&tagged, recipe).get_pixel(8, 8).0[0];
        assert!(red >= plain_red + 10, "scaled path: {red} vs {plain_red}");
    }
}
