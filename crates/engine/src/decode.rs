//! Guarded decoding: probe first, refuse truncated files, decode under `image::Limits`, read the EXIF
//! orientation, bring embedded ICC colour to sRGB (see `color`), and hand back 8-bit RGB or RGBA.
//!
//! JPEGs that shrink a lot are decoded at 1/2, 1/4 or 1/8 scale (the IDCT does the shrinking): by
//! jpeg-decoder in the default, pure-Rust build, or by the system libjpeg-turbo with the `turbojpeg`
//! feature (falling back to jpeg-decoder for anything libjpeg-turbo declines).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::color::{cmyk_to_rgb, to_srgb};
use crate::jpeg::is_complete;
use crate::probe::{inspect, Probed};
use crate::{EngineError, Format, Limits, SourceInfo};

/// A decoded source: 8-bit RGB (or RGBA when the file has alpha) as stored, plus its EXIF orientation.
pub(crate) struct Decoded {
    /// What the header said.
    pub info: SourceInfo,
    /// Pixels as stored, before orientation.
    pub image: DynamicImage,
    /// EXIF orientation 1..=8 (1 when absent or unreadable).
    pub orientation: u8,
}

impl Decoded {
    /// The pixels with the EXIF orientation applied.
    pub fn oriented(self) -> DynamicImage {
        let mut image = self.image;
        if let Some(o) = image::metadata::Orientation::from_exif(self.orientation) {
            image.apply_orientation(o);
        }
        image
    }
}

/// Which decoder serves DCT-scaled JPEG decodes in this build: "libjpeg-turbo" (the `turbojpeg`
/// feature with the library linked) or "jpeg-decoder" (pure Rust).
pub fn scaled_jpeg_decoder() -> &'static str {
    #[cfg(feature = "turbojpeg")]
    if atelier_turbojpeg::available() {
        return "libjpeg-turbo";
    }
    "jpeg-decoder"
}

/// Probes once and checks what can be checked without decoding: the limits, the colour model, and
/// for a JPEG that the data reaches its end-of-image marker.
pub(crate) fn inspect_checked<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Probed<'a>, EngineError> {
    let probed = inspect(bytes, limits)?;
    if probed.info.format == Format::Jpeg && !is_complete(bytes) {
        return Err(truncated_jpeg());
    }
    Ok(probed)
}

/// Validates the header against `limits`, then decodes with the allocation guard set.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, EngineError> {
    let probed = inspect_checked(bytes, limits)?;
    decode_probed(bytes, &probed, limits)
}

/// The full-size decode of a file `inspect_checked` accepted.
pub(crate) fn decode_probed(
    bytes: &[u8],
    probed: &Probed<'_>,
    limits: &Limits,
) -> Result<Decoded, EngineError> {
    let info = probed.info;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(info.format));
    reader.limits(decoder_limits(&info, limits));
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let orientation = match &probed.jpeg {
        Some(h) => h.exif.and_then(exif_orientation),
        None => decoder
            .exif_metadata()
            .ok()
            .flatten()
            .and_then(|raw| exif_orientation(&raw)),
    }
    .unwrap_or(1);
    let icc = match &probed.jpeg {
        Some(h) => h.icc_profile(),
        None => decoder.icc_profile().ok().flatten(),
    };
    let (w, h) = decoder.dimensions();
    if (w, h) != (info.width, info.height) {
        return Err(EngineError::Decode(format!(
            "the file's header says {}x{} but its image data is {w}x{h}; the file is damaged",
            info.width, info.height
        )));
    }
    let image = if probed.jpeg.as_ref().is_some_and(|h| h.is_cmyk()) {
        // zune-jpeg (inside `image`) panics on some malformed four-component frames (found by
        // fuzzing); jpeg-decoder handles CMYK and YCCK, and the conversion to RGB is ours.
        drop(decoder);
        scaled_pixels(bytes, probed, limits, 1)?.ok_or_else(|| {
            EngineError::Decode("the CMYK JPEG's frame does not match its header".into())
        })?
    } else {
        contain("image", || {
            DynamicImage::from_decoder(decoder).map_err(decode_error)
        })?
    };
    let mut image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.into_rgba8()),
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    };
    if let Some(icc) = icc {
        to_srgb(&mut image, &icc);
    }
    Ok(Decoded {
        info,
        image,
        orientation,
    })
}

/// Decodes a JPEG at 1/2, 1/4 or 1/8 scale, the smallest that still gives at least `min_w`×`min_h`
/// (stored axes). None when no reduction is possible. CMYK and YCCK come back as RGB (see `color`).
pub(crate) fn decode_jpeg_scaled(
    bytes: &[u8],
    probed: &Probed<'_>,
    limits: &Limits,
    min_w: u32,
    min_h: u32,
) -> Result<Option<Decoded>, EngineError> {
    let (info, Some(header)) = (probed.info, &probed.jpeg) else {
        return Ok(None);
    };
    let Some(denom) = scale_denominator(&info, min_w, min_h) else {
        return Ok(None);
    };
    let orientation = header.exif.and_then(exif_orientation).unwrap_or(1);
    let Some(mut image) = scaled_pixels(bytes, probed, limits, denom)? else {
        return Ok(None);
    };
    if let Some(icc) = header.icc_profile() {
        to_srgb(&mut image, &icc);
    }
    Ok(Some(Decoded {
        info,
        image,
        orientation,
    }))
}

/// The largest of 8, 4, 2 that still decodes at least `min_w`×`min_h` (sides rounded up).
pub(crate) fn scale_denominator(info: &SourceInfo, min_w: u32, min_h: u32) -> Option<u32> {
    [8, 4, 2]
        .into_iter()
        .find(|&d| info.width.div_ceil(d) >= min_w && info.height.div_ceil(d) >= min_h)
}

/// RGB pixels at 1/`denom` scale (1 = full size): libjpeg-turbo first when built in and scaling,
/// else (or when it declines, as for CMYK) jpeg-decoder. None when jpeg-decoder's size or pixel
/// layout is not the one asked for.
fn scaled_pixels(
    bytes: &[u8],
    probed: &Probed<'_>,
    limits: &Limits,
    denom: u32,
) -> Result<Option<DynamicImage>, EngineError> {
    let info = &probed.info;
    let (rw, rh) = (info.width.div_ceil(denom), info.height.div_ceil(denom));
    #[cfg(feature = "turbojpeg")]
    if denom == 1 {
        // Full-size decodes of CMYK only reach here; libjpeg-turbo declines those anyway.
    } else if let Ok(d) = atelier_turbojpeg::decode_scaled(bytes, denom, limits.max_pixels) {
        if (d.width, d.height) == (rw, rh) {
            let image = match d.channels {
                1 => image::GrayImage::from_raw(d.width, d.height, d.pixels)
                    .map(|g| DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(g).into_rgb8())),
                _ => image::RgbImage::from_raw(d.width, d.height, d.pixels)
                    .map(DynamicImage::ImageRgb8),
            };
            if image.is_some() {
                return Ok(image);
            }
        }
    }
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let budget = limits.max_pixels.saturating_mul(8).saturating_add(64 << 20);
    decoder.set_max_decoding_buffer_size(usize::try_from(budget).unwrap_or(usize::MAX));
    let clamp16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let (w, h) = decoder
        .scale(clamp16(rw), clamp16(rh))
        .map_err(|e| EngineError::Decode(format!("{e}; the JPEG may be damaged")))?;
    let (w, h) = (u32::from(w), u32::from(h));
    let format = decoder.info().map(|i| i.pixel_format);
    if (w, h) != (rw, rh)
        || !matches!(
            format,
            Some(
                jpeg_decoder::PixelFormat::RGB24
                    | jpeg_decoder::PixelFormat::L8
                    | jpeg_decoder::PixelFormat::CMYK32
            )
        )
    {
        return Ok(None);
    }
    let pixels = contain("jpeg-decoder", || {
        decoder
            .decode()
            .map_err(|e| EngineError::Decode(format!("{e}; the JPEG may be damaged")))
    })?;
    let image = match format {
        Some(jpeg_decoder::PixelFormat::L8) => image::GrayImage::from_raw(w, h, pixels)
            .map(|g| DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(g).into_rgb8())),
        Some(jpeg_decoder::PixelFormat::CMYK32) => {
            image::RgbImage::from_raw(w, h, cmyk_to_rgb(&pixels)).map(DynamicImage::ImageRgb8)
        }
        _ => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
    }
    .ok_or_else(|| {
        EngineError::Decode("the JPEG decoded to fewer pixels than its header says".into())
    })?;
    Ok(Some(image))
}

/// Runs a third-party decoder so that a panic inside it (a bug there, triggered by hostile bytes)
/// becomes a 3017 for this file instead of taking the worker down.
fn contain<T>(decoder: &str, f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(EngineError::Decode(format!(
            "the {decoder} decoder failed on this file; it is damaged or malformed"
        )))
    })
}

fn truncated_jpeg() -> EngineError {
    EngineError::Decode(
        "the JPEG ends before its image data does (no end-of-image marker); the file was \
         probably cut short during upload or download"
            .into(),
    )
}

/// The second guard: the decoder may not exceed the probed dimensions nor allocate more than a
/// 16-bit RGBA copy of the largest allowed image.
fn decoder_limits(info: &SourceInfo, limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(info.width);
    l.max_image_height = Some(info.height);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    l
}

/// The `image` crate's name for a format.
pub(crate) fn image_format(format: Format) -> ImageFormat {
    match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Webp => ImageFormat::WebP,
    }
}

fn decode_error(e: image::ImageError) -> EngineError {
    match e {
        image::ImageError::Limits(l) => EngineError::InvalidDimensions(format!(
            "the image needs more memory to decode than allowed ({l}); send a smaller image"
        )),
        other => EngineError::Decode(format!(
            "{other}; the file may be damaged or not really the format it claims"
        )),
    }
}

/// Orientation 1..=8 from a raw EXIF (TIFF) block, as found in JPEG APP1, PNG eXIf or WebP EXIF.
pub(crate) fn exif_orientation(raw: &[u8]) -> Option<u8> {
    let raw = raw.strip_prefix(b"Exif\0\0").unwrap_or(raw);
    let exif = exif::Reader::new().read_raw(raw.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let value = u8::try_from(field.value.get_uint(0)?).ok()?;
    (1..=8).contains(&value).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient, jpeg_with_orientation, raw_png};

    #[test]
    fn decodes_each_format_to_8_bit_pixels() {
        let img = gradient(33, 21);
        for fmt in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let d = decode(&encode(&img, fmt), &Limits::default()).expect("decode");
            assert_eq!((d.image.width(), d.image.height()), (33, 21));
            assert!(matches!(d.image, DynamicImage::ImageRgb8(_)), "{fmt:?}");
            assert_eq!(d.orientation, 1);
        }
        let rgba = DynamicImage::ImageRgba8(gradient(20, 20).into_rgba8());
        let d = decode(&encode(&rgba, ImageFormat::Png), &Limits::default()).expect("decode");
        assert!(matches!(d.image, DynamicImage::ImageRgba8(_)));
    }

    #[test]
    fn a_jpeg_cut_in_half_fails_to_decode() {
        let jpeg = encode(&gradient(200, 150), ImageFormat::Jpeg);
        assert!(is_complete(&jpeg));
        let half = &jpeg[..jpeg.len() / 2];
        let err = decode(half, &Limits::default()).err().expect("truncated");
        assert_eq!(err.code(), 3017, "{err}");
        // Cutting just the final EOI marker off is also caught.
        let err = decode(&jpeg[..jpeg.len() - 2], &Limits::default())
            .err()
            .expect("no EOI");
        assert_eq!(err.code(), 3017);
    }

    #[test]
    fn trailing_bytes_after_the_jpeg_are_allowed() {
        let mut jpeg = encode(&gradient(40, 40), ImageFormat::Jpeg);
        jpeg.extend_from_slice(&[0u8; 300]);
        decode(&jpeg, &Limits::default()).expect("trailing bytes are fine");
    }

    #[test]
    fn a_truncated_png_or_webp_fails_to_decode() {
        let img = gradient(200, 150);
        for fmt in [ImageFormat::Png, ImageFormat::WebP] {
            let bytes = encode(&img, fmt);
            for cut in [bytes.len() / 2, bytes.len() - 12] {
                let err = decode(&bytes[..cut], &Limits::default())
                    .err()
                    .expect("truncated");
                assert_eq!(err.code(), 3017, "{fmt:?} cut at {cut}: {err}");
            }
        }
    }

    #[test]
    fn garbage_after_a_valid_header_fails_to_decode() {
        let mut png = encode(&gradient(30, 30), ImageFormat::Png);
        let n = png.len();
        for b in &mut png[40..n - 20] {
            *b = 0x5A;
        }
        assert_eq!(
            decode(&png, &Limits::default()).err().expect("bad").code(),
            3017
        );
    }

    #[test]
    fn a_jpeg_can_be_decoded_at_a_reduced_scale() {
        let img = crate::testutil::product_photo(800, 600);
        let jpeg = encode(&img, ImageFormat::Jpeg);
        let probed = inspect_checked(&jpeg, &Limits::default()).expect("probe");
        let scaled = |w, h| decode_jpeg_scaled(&jpeg, &probed, &Limits::default(), w, h);
        let small = scaled(100, 75).expect("decode").expect("reducible");
        assert_eq!((small.image.width(), small.image.height()), (100, 75));
        let half = scaled(300, 10).expect("decode").expect("reducible");
        assert_eq!((half.image.width(), half.image.height()), (400, 300));
        assert!(scaled(500, 375).expect("decode").is_none());
        // The reduced decode looks like the full one, shrunk.
        let full = decode(&jpeg, &Limits::default()).expect("full").image;
        let shrunk = crate::encode::resize_exact(&full, 100, 75, false)
            .expect("resize")
            .into_rgb8();
        let diff: u64 = shrunk
            .as_raw()
            .iter()
            .zip(small.image.into_rgb8().as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        assert!(
            diff / (100 * 75 * 3) < 4,
            "mean difference {}",
            diff / (100 * 75 * 3)
        );
        let cut = &jpeg[..jpeg.len() / 2];
        assert_eq!(
            inspect_checked(cut, &Limits::default())
                .err()
                .map(|e| e.code()),
            Some(3017)
        );
    }

    #[test]
    fn reads_the_exif_orientation_of_a_jpeg() {
        let jpeg = jpeg_with_orientation(&gradient(40, 20), 6);
        let d = decode(&jpeg, &Limits::default()).expect("decode");
        assert_eq!(d.orientation, 6);
        let oriented = d.oriented();
        assert_eq!((oriented.width(), oriented.height()), (20, 40));
    }

    fn transform_png_to(bytes: &[u8], format: Format) -> DynamicImage {
        let recipe = crate::TransformRecipe {
            format: Some(format),
            ..crate::TransformRecipe::default()
        };
        let out = crate::transform(bytes, &recipe, &Limits::default(), &mut |_, _| {})
            .expect("transform");
        image::load_from_memory(&out[0].data).expect("decodable output")
    }

    #[test]
    fn a_16_bit_png_decodes_to_8_bit() {
        let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(20, 20, |x, _| {
            if x < 10 {
                image::Rgb([65535, 0, 32896])
            } else {
                image::Rgb([0, 65535, 0])
            }
        });
        let png = encode(&DynamicImage::ImageRgb16(img), ImageFormat::Png);
        let d = decode(&png, &Limits::default()).expect("decode");
        let rgb = d.image.as_rgb8().expect("8-bit RGB");
        assert_eq!(rgb.get_pixel(2, 2).0, [255, 0, 128]);
        assert_eq!(rgb.get_pixel(15, 2).0, [0, 255, 0]);
        let jpeg = transform_png_to(&png, Format::Jpeg).to_rgb8();
        assert!(jpeg.get_pixel(2, 2).0[0] > 230);
    }

    #[test]
    fn a_palette_png_with_transparency_decodes_to_rgba() {
        // Index 0: opaque blue, index 1: fully transparent red, index 2: half-transparent black.
        let plte = [0, 0, 255, 255, 0, 0, 0, 0, 0];
        let trns = [255, 0, 128];
        let data: Vec<u8> = (0..20 * 20).map(|i| ((i % 20) / 7) as u8).collect();
        let png = raw_png(
            20,
            20,
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            Some((&plte, &trns)),
            &data,
        );
        let d = decode(&png, &Limits::default()).expect("decode");
        let rgba = d.image.as_rgba8().expect("RGBA");
        assert_eq!(rgba.get_pixel(1, 1).0, [0, 0, 255, 255]);
        assert_eq!(rgba.get_pixel(8, 1).0[3], 0);
        assert_eq!(rgba.get_pixel(16, 1).0, [0, 0, 0, 128]);
        // On white: blue stays blue, transparent is white, half-black is mid grey.
        let jpeg = transform_png_to(&png, Format::Jpeg).to_rgb8();
        let p = jpeg.get_pixel(10, 10).0;
        assert!(p.iter().all(|&c| c > 235), "transparent → white: {p:?}");
        let p = jpeg.get_pixel(18, 10).0;
        assert!(
            p.iter().all(|&c| c.abs_diff(127) < 16),
            "half black → grey: {p:?}"
        );
        let p = jpeg.get_pixel(2, 10).0;
        assert!(p[2] > 200 && p[0] < 60, "blue: {p:?}");
    }

    #[test]
    fn a_grey_and_alpha_png_keeps_its_alpha_and_flattens_on_white() {
        let img = image::GrayAlphaImage::from_fn(30, 30, |x, _| {
            image::LumaA([40, if x < 15 { 255 } else { 0 }])
        });
        let png = encode(&DynamicImage::ImageLumaA8(img), ImageFormat::Png);
        let d = decode(&png, &Limits::default()).expect("decode");
        let rgba = d.image.as_rgba8().expect("grey+alpha becomes RGBA");
        assert_eq!(rgba.get_pixel(3, 3).0, [40, 40, 40, 255]);
        assert_eq!(rgba.get_pixel(25, 3).0[3], 0);
        let png_out = transform_png_to(&png, Format::Png);
        assert!(png_out.color().has_alpha());
        let jpeg = transform_png_to(&png, Format::Jpeg).to_rgb8();
        assert!(jpeg.get_pixel(3, 15).0.iter().all(|&c| c.abs_diff(40) < 12));
        assert!(jpeg.get_pixel(26, 15).0.iter().all(|&c| c > 240));
    }

    #[test]
    fn semi_transparent_png_pixels_are_blended_with_white_for_jpeg() {
        let img = image::RgbaImage::from_pixel(24, 24, image::Rgba([255, 0, 0, 128]));
        let png = encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png);
        let p = transform_png_to(&png, Format::Jpeg)
            .to_rgb8()
            .get_pixel(12, 12)
            .0;
        // 50 % red over white is (255, 127, 127).
        assert!(
            p[0] > 240 && p[1].abs_diff(127) < 12 && p[2].abs_diff(127) < 12,
            "{p:?}"
        );
    }

    /// Found by `cargo fuzz` (fuzz/README.md): an Adobe CMYK frame whose K channel is sampled 2×2
    /// while C, M and Y are 1×1 made zune-jpeg panic (slice index out of range in its IDCT).
    /// Four-component JPEGs now go through jpeg-decoder, and third-party decoders are contained.
    const FUZZ_CMYK_MIXED_SAMPLING: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01, 0x02, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xEE, 0x00, 0x0E, 0x41, 0x64, 0x6F, 0x62, 0x65, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x14, 0x08, 0x00, 0x14, 0x00, 0x18,
        0x04, 0x00, 0x11, 0x01, 0x01, 0x11, 0x01, 0x02, 0x11, 0x01, 0x03, 0x22, 0x00, 0xFF, 0xDB,
        0x00, 0x43, 0x00, 0xF5, 0xF6, 0xF7, 0x03, 0x00, 0x00, 0x01, 0x11, 0x00, 0xF9, 0x11, 0x6D,
        0xF0, 0x7D, 0x33, 0xE9, 0x9E, 0x6A, 0x55, 0x80, 0x93, 0x9E, 0x33, 0x9A, 0xE7, 0xE8, 0x2A,
        0x51, 0x03, 0x03, 0xDB, 0xD0, 0xE3, 0xAD, 0x5F, 0x10, 0xF0, 0x3E, 0x51, 0xD7, 0xA7, 0xAD,
        0x48, 0x96, 0xED, 0x11, 0x21, 0x18, 0x1A, 0x1D, 0x1D, 0x1F, 0x1F, 0x1F, 0x13, 0x17, 0x22,
        0x24, 0x22, 0x1E, 0x24, 0x1C, 0x1E, 0x1F, 0x1E, 0xFF, 0xDB, 0x00, 0x43, 0x01, 0x05, 0x05,
        0x05, 0x07, 0x06, 0x07, 0x0E, 0x08, 0x08, 0x0E, 0x1E, 0x14, 0x11, 0x14, 0x1E, 0x1E, 0x1E,
        0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E,
        0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E,
        0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E, 0x1E,
        0x1E, 0x1E, 0xFF, 0xC4, 0x00, 0x1F, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        0x07, 0x08, 0x09, 0x0A, 0x0B, 0xFF, 0xC4, 0x00, 0xB5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03,
        0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7D, 0x01, 0x02, 0x03, 0x00,
        0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14,
        0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33,
        0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29,
        0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4,
        0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA,
        0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7,
        0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2,
        0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFF, 0xC4, 0x00, 0x1F, 0x01, 0x00, 0x03,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0xFF, 0xC4, 0x00, 0xB5,
        0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01,
        0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51,
        0x07, 0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09,
        0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1,
        0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A,
        0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
        0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78,
        0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x00, 0x36, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95,
        0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2,
        0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8,
        0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5,
        0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFF,
        0xDA, 0x00, 0x0C, 0x03, 0x00, 0x00, 0x01, 0x11, 0x02, 0x11, 0x00, 0x3F, 0x00, 0xF9, 0x11,
        0x6D, 0xF0, 0xFF, 0xD9,
    ];

    #[test]
    fn a_cmyk_frame_with_mixed_sampling_is_an_image_or_a_decode_error_never_a_panic() {
        let tight = Limits {
            max_pixels: 1_000_000,
            ..Limits::default()
        };
        crate::probe(FUZZ_CMYK_MIXED_SAMPLING, &Limits::default()).expect("valid header");
        for width in [48, 0] {
            let recipe = crate::TransformRecipe {
                resize: (width > 0).then_some(crate::Resize {
                    width,
                    height: 0,
                    fit: crate::Fit::Inside,
                }),
                format: Some(Format::Jpeg),
                ..crate::TransformRecipe::default()
            };
            let result = std::panic::catch_unwind(|| {
                crate::transform(FUZZ_CMYK_MIXED_SAMPLING, &recipe, &tight, &mut |_, _| {})
            });
            match result.expect("the engine must not panic") {
                Ok(out) => assert_eq!((out[0].width, out[0].height), (24, 20)),
                Err(e) => assert_eq!(e.code(), 3017, "{e}"),
            }
        }
    }
}
