//! The `turbojpeg` feature's shortcut for the commonest job, a 4:2:0 JPEG shrunk to a smaller JPEG:
//! libjpeg-turbo decodes straight to scaled Y/Cb/Cr planes, each plane is resized on its own, and
//! the planes are encoded as they are. No colour conversion or chroma upsampling happens anywhere,
//! and no RGB copy is made. Anything else (crop, rotation, flips, an EXIF orientation to apply, an
//! ICC profile, other subsampling) takes the general path, which gives the same pixels.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use atelier_turbojpeg::{decode_scaled_420, encode_420, Planes420};

use crate::encode::fit_within;
use crate::probe::Probed;
use crate::{Format, Limits, Rendered, Rotation, Thumbnail, TransformRecipe};

/// JPEG quality of thumbnails (as in `encode`).
const THUMBNAIL_QUALITY: u8 = 80;
/// Longest side of a thumbnail (as in `encode`).
const THUMBNAIL_SIDE: u32 = 256;

/// The rendered output when the shortcut applies; None sends the job down the general path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn jpeg_to_jpeg(
    bytes: &[u8],
    probed: &Probed<'_>,
    recipe: &TransformRecipe,
    limits: &Limits,
    target: (u32, u32, bool),
    denom: u32,
    quality: u8,
    progress: &mut dyn FnMut(&str, u32),
) -> Option<Rendered> {
    let header = probed.jpeg.as_ref()?;
    let plain = recipe.crop.is_none()
        && recipe.rotate == Rotation::None
        && !recipe.flip_horizontal
        && !recipe.flip_vertical
        && recipe.format.unwrap_or(Format::Jpeg) == Format::Jpeg
        && header.components == 3
        && header.adobe_transform != Some(0)
        && header.icc_chunks.is_empty();
    let oriented = !recipe.auto_orient
        || header
            .exif
            .and_then(crate::decode::exif_orientation)
            .unwrap_or(1)
            == 1;
    if !plain || !oriented || denom < 2 {
        return None;
    }
    let planes = decode_scaled_420(bytes, denom, limits.max_pixels).ok()?;
    if (planes.width, planes.height)
        != (
            probed.info.width.div_ceil(denom),
            probed.info.height.div_ceil(denom),
        )
    {
        return None;
    }
    progress("resize", 45);
    let (w, h, cover) = target;
    let out = resize_planes(&planes, w, h, cover)?;
    progress("encode", 75);
    let data = encode_420(&out, quality).ok()?;
    let (tw, th) = fit_within(w, h, THUMBNAIL_SIDE);
    let small = resize_planes(&out, tw, th, false)?;
    let thumbnail = encode_420(&small, THUMBNAIL_QUALITY).ok()?;
    Some(Rendered {
        name: "image.jpg".into(),
        format: Format::Jpeg,
        width: w,
        height: h,
        data,
        thumbnail: Thumbnail {
            format: Format::Jpeg,
            width: tw,
            height: th,
            data: thumbnail,
        },
        matting: None,
    })
}

/// Each plane to the new size (chroma to half of it, rounded up), Lanczos3, optionally cropping
/// centred to keep the aspect ratio (cover).
fn resize_planes(p: &Planes420, w: u32, h: u32, cover: bool) -> Option<Planes420> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    Some(Planes420 {
        width: w,
        height: h,
        chroma_width: cw,
        chroma_height: ch,
        y: resize_plane(&p.y, p.width, p.height, w, h, cover)?,
        cb: resize_plane(&p.cb, p.chroma_width, p.chroma_height, cw, ch, cover)?,
        cr: resize_plane(&p.cr, p.chroma_width, p.chroma_height, cw, ch, cover)?,
    })
}

fn resize_plane(src: &[u8], sw: u32, sh: u32, w: u32, h: u32, cover: bool) -> Option<Vec<u8>> {
    if (sw, sh) == (w, h) {
        return Some(src.to_vec());
    }
    let src = Image::from_vec_u8(sw, sh, src.to_vec(), PixelType::U8).ok()?;
    let mut dst = Image::new(w, h, PixelType::U8);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if cover {
        options = options.fit_into_destination(None);
    }
    Resizer::new().resize(&src, &mut dst, &options).ok()?;
    Some(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::product_photo;
    use crate::{Fit, Resize};

    fn jpeg_420(w: u32, h: u32) -> Vec<u8> {
        let img = product_photo(w, h).into_rgb8();
        let mut out = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut out, 90);
        e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        e.encode(
            img.as_raw(),
            w as u16,
            h as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("fixture");
        out
    }

    /// Whether libjpeg-turbo is linked, checked against what the build was told: CI runs these
    /// tests with `ATELIER_TURBOJPEG=required` and again with `=off`, so each branch below runs.
    fn linked() -> bool {
        let linked = atelier_turbojpeg::available();
        match option_env!("ATELIER_TURBOJPEG") {
            Some("required") => assert!(linked, "ATELIER_TURBOJPEG=required but not linked"),
            Some("off") => assert!(!linked, "ATELIER_TURBOJPEG=off but linked"),
            _ => {}
        }
        linked
    }

    #[test]
    fn the_shortcut_matches_the_general_path_or_steps_aside_without_the_library() {
        let src = jpeg_420(801, 601);
        for (fit, w, h) in [
            (Fit::Inside, 100, 0),
            (Fit::Cover, 90, 90),
            (Fit::Fill, 60, 120),
        ] {
            let recipe = TransformRecipe {
                resize: Some(Resize {
                    width: w,
                    height: h,
                    fit,
                }),
                format: Some(Format::Jpeg),
                ..TransformRecipe::default()
            };
            let probed = crate::decode::inspect_checked(&src, &Limits::default()).expect("probe");
            let plan = crate::resize::plan(&probed, &recipe, &Limits::default())
                .expect("plan")
                .expect("jpeg");
            let fast = jpeg_to_jpeg(
                &src,
                &probed,
                &recipe,
                &Limits::default(),
                plan.target,
                4,
                85,
                &mut |_, _| {},
            );
            let Some(fast) = fast else {
                assert!(!linked(), "{fit:?}: the shortcut should apply");
                continue;
            };
            assert!(linked(), "{fit:?}: the shortcut ran without libjpeg-turbo");
            // The general path, through the public API with a PNG output (so the shortcut is off).
            let general = crate::transform(
                &src,
                &TransformRecipe {
                    format: Some(Format::Png),
                    ..recipe.clone()
                },
                &Limits::default(),
                &mut |_, _| {},
            )
            .expect("general");
            let a = image::load_from_memory(&fast.data).expect("jpeg").to_rgb8();
            let b = image::load_from_memory(&general[0].data)
                .expect("png")
                .to_rgb8();
            assert_eq!(a.dimensions(), b.dimensions(), "{fit:?}");
            let diff: u64 = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| u64::from(x.abs_diff(*y)))
                .sum();
            let mean = diff / a.as_raw().len() as u64;
            assert!(mean <= 4, "{fit:?}: mean difference {mean}");
            let t = image::load_from_memory(&fast.thumbnail.data).expect("thumb");
            assert_eq!(
                (t.width(), t.height()),
                (fast.thumbnail.width, fast.thumbnail.height)
            );
        }
    }

    #[test]
    fn rotations_orientation_and_444_take_the_general_path() {
        let src = jpeg_420(400, 300);
        let probed = crate::decode::inspect_checked(&src, &Limits::default()).expect("probe");
        let rotated = TransformRecipe {
            resize: Some(Resize {
                width: 50,
                height: 0,
                fit: Fit::Inside,
            }),
            rotate: Rotation::R90,
            ..TransformRecipe::default()
        };
        assert!(jpeg_to_jpeg(
            &src,
            &probed,
            &rotated,
            &Limits::default(),
            (50, 38, false),
            4,
            85,
            &mut |_, _| {}
        )
        .is_none());
        let oriented = crate::testutil::jpeg_with_orientation(&product_photo(400, 300), 6);
        let probed = crate::decode::inspect_checked(&oriented, &Limits::default()).expect("probe");
        let plain = TransformRecipe {
            resize: Some(Resize {
                width: 50,
                height: 0,
                fit: Fit::Inside,
            }),
            ..TransformRecipe::default()
        };
        assert!(jpeg_to_jpeg(
            &oriented,
            &probed,
            &plain,
            &Limits::default(),
            (50, 67, false),
            4,
            85,
            &mut |_, _| {}
        )
        .is_none());
    }
}
