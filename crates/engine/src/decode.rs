//! Guarded decoding: probe first, refuse truncated files, decode under `image::Limits`, read the EXIF
//! orientation, and hand back 8-bit RGB or RGBA pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::probe::probe;
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

/// Validates the header against `limits`, then decodes with the allocation guard set.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, EngineError> {
    let info = probe(bytes, limits)?;
    if info.format == Format::Jpeg && !jpeg_is_complete(bytes) {
        return Err(truncated_jpeg());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(info.format));
    reader.limits(decoder_limits(&info, limits));
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let orientation = decoder
        .exif_metadata()
        .ok()
        .flatten()
        .and_then(|raw| exif_orientation(&raw))
        .unwrap_or(1);
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    let image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.into_rgba8()),
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    };
    Ok(Decoded {
        info,
        image,
        orientation,
    })
}

/// Decodes a JPEG at 1/2, 1/4 or 1/8 scale, the smallest that still gives at least `min_w`×`min_h`
/// (stored axes). None when no reduction is possible or the colour type needs the full decoder.
pub(crate) fn decode_jpeg_scaled(
    bytes: &[u8],
    limits: &Limits,
    min_w: u32,
    min_h: u32,
) -> Result<Option<Decoded>, EngineError> {
    let info = probe(bytes, limits)?;
    if info.format != Format::Jpeg {
        return Ok(None);
    }
    if !jpeg_is_complete(bytes) {
        return Err(truncated_jpeg());
    }
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let budget = limits.max_pixels.saturating_mul(8).saturating_add(64 << 20);
    decoder.set_max_decoding_buffer_size(usize::try_from(budget).unwrap_or(usize::MAX));
    // The decoder picks a scale that satisfies either axis; choose one that satisfies both.
    let reduced = |d: u32| (info.width.div_ceil(d), info.height.div_ceil(d));
    let Some((rw, rh)) = [8, 4, 2]
        .into_iter()
        .map(reduced)
        .find(|&(w, h)| w >= min_w && h >= min_h)
    else {
        return Ok(None);
    };
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
    let orientation = decoder.exif_data().and_then(exif_orientation).unwrap_or(1);
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
    Ok(Some(Decoded {
        info,
        image,
        orientation,
    }))
}

/// The EXIF orientation of a JPEG (1 when absent), read from its headers only.
pub(crate) fn jpeg_orientation(bytes: &[u8]) -> u8 {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    if decoder.read_info().is_err() {
        return 1;
    }
    decoder.exif_data().and_then(exif_orientation).unwrap_or(1)
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

/// True when the entropy-coded data after the first scan reaches an end-of-image marker.
///
/// The JPEG decoder fills missing data with grey rather than failing, so a file cut in half would
/// otherwise "decode". Segments are skipped by their length, so an EOI inside an EXIF thumbnail does
/// not count, and trailing bytes after the real EOI are allowed.
pub(crate) fn jpeg_is_complete(b: &[u8]) -> bool {
    let mut i = 2;
    let mut in_scan = false;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            // Entropy-coded bytes (or junk between segments): move to the next 0xFF.
            match b[i..].iter().position(|&x| x == 0xFF) {
                Some(p) => i += p,
                None => return false,
            }
            continue;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1,
            0x00 | 0x01 | 0xD0..=0xD8 => i += 2,
            0xD9 => return in_scan,
            _ => {
                let Some(len) = b
                    .get(i + 2..i + 4)
                    .map(|s| usize::from(s[0]) << 8 | usize::from(s[1]))
                else {
                    return false;
                };
                if marker == 0xDA {
                    in_scan = true;
                }
                i += 2 + len.max(2);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient, jpeg_with_orientation};

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
        assert!(jpeg_is_complete(&jpeg));
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
        let small = decode_jpeg_scaled(&jpeg, &Limits::default(), 100, 75)
            .expect("decode")
            .expect("reducible");
        assert_eq!((small.image.width(), small.image.height()), (100, 75));
        let half = decode_jpeg_scaled(&jpeg, &Limits::default(), 300, 10)
            .expect("decode")
            .expect("reducible");
        assert_eq!((half.image.width(), half.image.height()), (400, 300));
        assert!(decode_jpeg_scaled(&jpeg, &Limits::default(), 500, 375)
            .expect("decode")
            .is_none());
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
            decode_jpeg_scaled(cut, &Limits::default(), 100, 75)
                .err()
                .map(|e| e.code()),
            Some(3017)
        );
    }

    #[test]
    fn reads_the_exif_orientation_of_a_jpeg() {
        let jpeg = jpeg_with_orientation(&gradient(40, 20), 6);
        assert_eq!(jpeg_orientation(&jpeg), 6);
        let d = decode(&jpeg, &Limits::default()).expect("decode");
        assert_eq!(d.orientation, 6);
        let oriented = d.oriented();
        assert_eq!((oriented.width(), oriented.height()), (20, 40));
    }
}
