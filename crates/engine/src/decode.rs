//! Guarded decoding: probe first, refuse truncated files, decode under `image::Limits`, read the EXIF
//! orientation, bring embedded ICC colour to sRGB (see `color`), and hand back 8-bit RGB or RGBA.
//!
//! JPEGs that shrink a lot are decoded at 1/2, 1/4 or 1/8 scale (the IDCT does the shrinking): by
//! jpeg-decoder in the default, pure-Rust build, or by the system libjpeg-turbo with the `turbojpeg`
//! feature (falling back to jpeg-decoder for anything libjpeg-turbo declines).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::color::to_srgb;
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
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
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
/// (stored axes). None when no reduction is possible or the colour model needs the full decoder
/// (CMYK and YCCK go through the full decoder, which converts them to RGB).
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
    if header.is_cmyk() {
        return Ok(None);
    }
    let reduced = |d: u32| (info.width.div_ceil(d), info.height.div_ceil(d));
    let Some(denom) = [8, 4, 2].into_iter().find(|&d| {
        let (w, h) = reduced(d);
        w >= min_w && h >= min_h
    }) else {
        return Ok(None);
    };
    let orientation = header.exif.and_then(exif_orientation).unwrap_or(1);
    let Some(mut image) = scaled_pixels(bytes, &info, limits, denom)? else {
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

/// RGB pixels at 1/`denom` scale: libjpeg-turbo first when built in, else (or when it declines)
/// jpeg-decoder.
fn scaled_pixels(
    bytes: &[u8],
    info: &SourceInfo,
    limits: &Limits,
    denom: u32,
) -> Result<Option<DynamicImage>, EngineError> {
    let (rw, rh) = (info.width.div_ceil(denom), info.height.div_ceil(denom));
    #[cfg(feature = "turbojpeg")]
    if let Ok(d) = atelier_turbojpeg::decode_scaled(bytes, denom, limits.max_pixels) {
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
            Some(jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8)
        )
    {
        return Ok(None);
    }
    let pixels = decoder
        .decode()
        .map_err(|e| EngineError::Decode(format!("{e}; the JPEG may be damaged")))?;
    let image = match format {
        Some(jpeg_decoder::PixelFormat::L8) => image::GrayImage::from_raw(w, h, pixels)
            .map(|g| DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(g).into_rgb8())),
        _ => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
    }
    .ok_or_else(|| {
        EngineError::Decode("the JPEG decoded to fewer pixels than its header says".into())
    })?;
    Ok(Some(image))
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
}
