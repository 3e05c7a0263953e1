//! Encoding outputs and their thumbnails. Nothing but pixels is written: no EXIF, ICC or text chunks.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::png::{CompressionType, PngEncoder};
use image::{DynamicImage, ImageEncoder, RgbImage};

use crate::{EngineError, Format, Rendered, Thumbnail};

/// Longest side of a thumbnail.
const THUMBNAIL_SIDE: u32 = 256;
/// JPEG quality of thumbnails.
const THUMBNAIL_QUALITY: u8 = 80;

/// Encodes `image` (8-bit RGB or RGBA) as `format` and makes its thumbnail.
///
/// JPEG has no alpha, so an RGBA image is flattened on white first; the thumbnail then follows the
/// output (PNG only when the output really has alpha).
///
/// `lossless` matters only for WebP (see [`crate::webp::is_lossless`]); PNG is always lossless.
pub(crate) fn render(
    name: &str,
    image: DynamicImage,
    format: Format,
    quality: u8,
    lossless: bool,
) -> Result<Rendered, EngineError> {
    let image = if format == Format::Jpeg && image.color().has_alpha() {
        DynamicImage::ImageRgb8(flatten_on_white(&image))
    } else {
        image
    };
    let data = if format == Format::Webp {
        encode_webp(&image, quality, lossless)?
    } else {
        encode(&image, format, quality)?
    };
    let thumbnail = thumbnail(&image)?;
    Ok(Rendered {
        name: name.to_string(),
        format,
        width: image.width(),
        height: image.height(),
        data,
        thumbnail,
        matting: None,
    })
}

/// Encodes 8-bit RGB or RGBA pixels. JPEG goes through jpeg-encoder with 4:2:0 chroma subsampling
/// (what libvips, Pillow and libjpeg write by default; about 3× faster than `image`'s 4:4:4 encoder).
/// WebP goes through libwebp, lossy at `quality` (100 means lossless); see [`encode_webp`].
pub(crate) fn encode(
    image: &DynamicImage,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, EngineError> {
    let (w, h) = (image.width(), image.height());
    let (bytes, color) = match image {
        DynamicImage::ImageRgba8(buf) => (buf.as_raw().as_slice(), image::ExtendedColorType::Rgba8),
        DynamicImage::ImageRgb8(buf) => (buf.as_raw().as_slice(), image::ExtendedColorType::Rgb8),
        _ => {
            return Err(EngineError::Encode(
                "internal: pixels are not 8-bit RGB(A)".into(),
            ))
        }
    };
    let mut out = Vec::new();
    let result = match format {
        Format::Jpeg => {
            if color == image::ExtendedColorType::Rgba8 {
                let flat = flatten_on_white(image);
                return encode(&DynamicImage::ImageRgb8(flat), format, quality);
            }
            return encode_jpeg(bytes, w, h, quality);
        }
        Format::Png => PngEncoder::new_with_quality(
            &mut out,
            CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        )
        .write_image(bytes, w, h, color),
        Format::Webp => return encode_webp(image, quality, false),
    };
    result
        .map_err(|e| EngineError::Encode(format!("{} encoder failed: {e}", format.extension())))?;
    Ok(out)
}

/// WebP through libwebp: lossy at `quality` unless `lossless` or quality 100 asks for lossless.
fn encode_webp(image: &DynamicImage, quality: u8, lossless: bool) -> Result<Vec<u8>, EngineError> {
    let (pixels, rgba) = match image {
        DynamicImage::ImageRgba8(buf) => (buf.as_raw().as_slice(), true),
        DynamicImage::ImageRgb8(buf) => (buf.as_raw().as_slice(), false),
        _ => {
            return Err(EngineError::Encode(
                "internal: pixels are not 8-bit RGB(A)".into(),
            ))
        }
    };
    crate::webp::encode(
        pixels,
        image.width(),
        image.height(),
        rgba,
        quality,
        lossless,
    )
}

/// Baseline JPEG, 4:2:0, from 8-bit RGB: libjpeg-turbo's encoder with the `turbojpeg` feature
/// (about twice as fast), jpeg-encoder otherwise or when libjpeg-turbo is not linked.
fn encode_jpeg(rgb: &[u8], w: u32, h: u32, quality: u8) -> Result<Vec<u8>, EngineError> {
    #[cfg(feature = "turbojpeg")]
    if let Ok(out) = atelier_turbojpeg::encode_rgb(rgb, w, h, quality) {
        return Ok(out);
    }
    let too_big = || EngineError::Encode(format!("a {w}x{h} image is too large for JPEG"));
    let (w16, h16) = (
        u16::try_from(w).map_err(|_| too_big())?,
        u16::try_from(h).map_err(|_| too_big())?,
    );
    let mut out = Vec::with_capacity(rgb.len() / 8 + 1024);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| EngineError::Encode(format!("jpg encoder failed: {e}")))?;
    Ok(out)
}

/// Composites RGBA over white; RGB passes through.
pub(crate) fn flatten_on_white(image: &DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgba8(rgba) => {
            let mut rgb = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
            for p in rgba.as_raw().chunks_exact(4) {
                let a = u32::from(p[3]);
                let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
                rgb.extend_from_slice(&[mix(p[0]), mix(p[1]), mix(p[2])]);
            }
            RgbImage::from_raw(rgba.width(), rgba.height(), rgb)
                .unwrap_or_else(|| RgbImage::new(rgba.width(), rgba.height()))
        }
        other => other.to_rgb8(),
    }
}

/// Resizes 8-bit RGB(A) pixels to exactly `w`×`h` (alpha-aware), optionally cropping centred to
/// keep the aspect ratio instead of stretching.
pub(crate) fn resize_exact(
    image: &DynamicImage,
    w: u32,
    h: u32,
    crop_centred: bool,
) -> Result<DynamicImage, EngineError> {
    if (image.width(), image.height()) == (w, h) {
        return Ok(image.clone());
    }
    let mut dst = DynamicImage::new(w, h, image.color());
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if crop_centred {
        options = options.fit_into_destination(None);
    }
    Resizer::new()
        .resize(image, &mut dst, &options)
        .map_err(|e| EngineError::Encode(format!("resize to {w}x{h} failed: {e}")))?;
    Ok(dst)
}

/// Size that fits `w`×`h` into a `side`×`side` box, never upscaling.
pub(crate) fn fit_within(w: u32, h: u32, side: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= side {
        return (w, h);
    }
    let scale = |v: u32| {
        ((u64::from(v) * u64::from(side) + u64::from(long) / 2) / u64::from(long)).max(1) as u32
    };
    (scale(w), scale(h))
}

/// A thumbnail with the longest side at most 256: PNG when the image has alpha, else JPEG.
pub(crate) fn thumbnail(image: &DynamicImage) -> Result<Thumbnail, EngineError> {
    let (w, h) = fit_within(image.width(), image.height(), THUMBNAIL_SIDE);
    let small = resize_exact(image, w, h, false)?;
    let format = if small.color().has_alpha() {
        Format::Png
    } else {
        Format::Jpeg
    };
    let data = encode(&small, format, THUMBNAIL_QUALITY)?;
    Ok(Thumbnail {
        format,
        width: w,
        height: h,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradient;
    use image::{Rgba, RgbaImage};

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).expect("decodable output")
    }

    #[test]
    fn each_format_round_trips() {
        let img = gradient(64, 48);
        for format in [Format::Jpeg, Format::Png, Format::Webp] {
            let r = render("x", img.clone(), format, 90, false).expect("render");
            let back = decode(&r.data);
            assert_eq!((back.width(), back.height()), (64, 48), "{format:?}");
            assert_eq!(
                image::guess_format(&r.data).expect("guess"),
                crate::decode::image_format(format)
            );
        }
    }

    #[test]
    fn jpeg_quality_changes_the_size() {
        let img = crate::testutil::product_photo(200, 150);
        let low = encode(&img, Format::Jpeg, 20).expect("q20");
        let high = encode(&img, Format::Jpeg, 95).expect("q95");
        assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
    }

    #[test]
    fn jpeg_of_transparent_pixels_is_white() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 20, Rgba([0, 0, 0, 0])));
        let r = render("x.jpg", img, Format::Jpeg, 90, false).expect("render");
        assert_eq!(r.thumbnail.format, Format::Jpeg);
        let p = decode(&r.data).to_rgb8().get_pixel(10, 10).0;
        assert!(p.iter().all(|&c| c > 250), "{p:?}");
    }

    #[test]
    fn thumbnails_fit_256_and_never_upscale() {
        let big = render("a", gradient(1000, 400), Format::Png, 90, false).expect("big");
        assert_eq!((big.thumbnail.width, big.thumbnail.height), (256, 102));
        assert_eq!(big.thumbnail.format, Format::Jpeg);
        let t = decode(&big.thumbnail.data);
        assert_eq!((t.width(), t.height()), (256, 102));

        let small = render("b", gradient(100, 30), Format::Jpeg, 90, false).expect("small");
        assert_eq!((small.thumbnail.width, small.thumbnail.height), (100, 30));

        let alpha = DynamicImage::ImageRgba8(gradient(300, 600).into_rgba8());
        let a = render("c", alpha, Format::Png, 90, false).expect("alpha");
        assert_eq!(a.thumbnail.format, Format::Png);
        assert_eq!((a.thumbnail.width, a.thumbnail.height), (128, 256));
        assert!(decode(&a.thumbnail.data).color().has_alpha());
    }
}
