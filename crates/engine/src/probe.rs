//! Format detection by magic bytes and dimensions from the header, without decoding pixels.
//!
//! The headers are parsed by hand so a file claiming absurd dimensions is refused before any decoder
//! (or allocation) sees it.

use crate::jpeg::{read_header, JpegHeader};
use crate::{EngineError, Format, Limits, SourceInfo};

/// Format from magic bytes (3003 otherwise), dimensions from the header without decoding pixels
/// (3004 when over max_pixels or a side too small or bad aspect), 3017 when the header cannot be read.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<SourceInfo, EngineError> {
    inspect(bytes, limits).map(|p| p.info)
}

/// What one look at the header gives the decoders: the checked size, and for a JPEG its segments.
pub(crate) struct Probed<'a> {
    /// Format and stored size, already checked against the limits.
    pub info: SourceInfo,
    /// The JPEG's header facts (None for PNG and WebP).
    pub jpeg: Option<JpegHeader<'a>>,
}

/// `probe`, keeping what the JPEG header walk found so nothing reads the header twice. Refuses JPEGs
/// whose colour model the engine cannot show (3003): only 1 (grey), 3 (YCbCr/RGB) and 4 (CMYK/YCCK)
/// components are decoded.
pub(crate) fn inspect<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Probed<'a>, EngineError> {
    let format = sniff(bytes)?;
    let (width, height, jpeg) = match format {
        Format::Jpeg => {
            let h = read_header(bytes)?;
            (h.width, h.height, Some(h))
        }
        Format::Png => {
            let (w, h) = png_dimensions(bytes)?;
            (w, h, None)
        }
        Format::Webp => {
            let (w, h) = webp_dimensions(bytes)?;
            (w, h, None)
        }
    };
    check_dimensions(width, height, limits)?;
    if let Some(h) = &jpeg {
        if !matches!(h.components, 1 | 3 | 4) {
            return Err(EngineError::UnsupportedFormat(format!(
                "the JPEG has {} colour components; only greyscale, colour (YCbCr or RGB) and \
                 CMYK JPEGs are supported",
                h.components
            )));
        }
    }
    Ok(Probed {
        info: SourceInfo {
            format,
            width,
            height,
        },
        jpeg,
    })
}

/// The format named by the first bytes of the file.
pub(crate) fn sniff(bytes: &[u8]) -> Result<Format, EngineError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(Format::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(Format::Webp)
    } else if bytes.is_empty() {
        Err(EngineError::UnsupportedFormat(
            "the file is empty; send a JPEG, PNG or WebP image".into(),
        ))
    } else {
        Err(EngineError::UnsupportedFormat(
            "the file is not a JPEG, PNG or WebP image (checked by its first bytes)".into(),
        ))
    }
}

/// Refuses dimensions outside the limits with a message a person can act on.
pub(crate) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(), EngineError> {
    if width < limits.min_side || height < limits.min_side {
        return Err(EngineError::InvalidDimensions(format!(
            "image is {width}x{height}; width and height must be at least {} pixels",
            limits.min_side
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(EngineError::InvalidDimensions(format!(
            "image is {width}x{height} ({}); the limit is {}",
            megapixels(pixels),
            megapixels(limits.max_pixels)
        )));
    }
    let (w, h) = (u64::from(width), u64::from(height));
    if limits.model_aspect && (w >= 3 * h || h >= 3 * w) {
        return Err(EngineError::InvalidDimensions(format!(
            "image is {width}x{height} (aspect {:.2}:1); model kinds need an aspect ratio strictly \
             between 1:3 and 3:1",
            w as f64 / h as f64
        )));
    }
    Ok(())
}

/// "50 MP", "12.3 MP", "0.2 MP".
pub(crate) fn megapixels(pixels: u64) -> String {
    let mp = pixels as f64 / 1_000_000.0;
    if pixels % 1_000_000 == 0 || mp >= 100.0 {
        format!("{mp:.0} MP")
    } else {
        format!("{mp:.1} MP")
    }
}

fn truncated(what: &str) -> EngineError {
    EngineError::Decode(format!(
        "the {what} header is truncated or corrupt; the file may be damaged or cut short"
    ))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

fn png_dimensions(b: &[u8]) -> Result<(u32, u32), EngineError> {
    if b.get(12..16) != Some(b"IHDR".as_slice()) {
        return Err(truncated("PNG"));
    }
    let width = be32(b, 16).ok_or_else(|| truncated("PNG"))?;
    let height = be32(b, 20).ok_or_else(|| truncated("PNG"))?;
    Ok((width, height))
}

fn webp_dimensions(b: &[u8]) -> Result<(u32, u32), EngineError> {
    let chunk = b.get(12..16).ok_or_else(|| truncated("WebP"))?;
    let dims = match chunk {
        b"VP8 " => {
            if b.get(23..26) != Some([0x9D, 0x01, 0x2A].as_slice()) {
                return Err(truncated("WebP (VP8)"));
            }
            le16(b, 26)
                .zip(le16(b, 28))
                .map(|(w, h)| (u32::from(w & 0x3FFF), u32::from(h & 0x3FFF)))
        }
        b"VP8L" => {
            if b.get(20) != Some(&0x2F) {
                return Err(truncated("WebP (VP8L)"));
            }
            le32(b, 21).map(|bits| ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => le24(b, 24).zip(le24(b, 27)).map(|(w, h)| (w + 1, h + 1)),
        _ => None,
    };
    dims.ok_or_else(|| truncated("WebP"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient};
    use image::ImageFormat;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn detects_each_format_by_magic_bytes() {
        let img = gradient(40, 30);
        for (fmt, want) in [
            (ImageFormat::Jpeg, Format::Jpeg),
            (ImageFormat::Png, Format::Png),
            (ImageFormat::WebP, Format::Webp),
        ] {
            let info = probe(&encode(&img, fmt), &limits()).expect("probe");
            assert_eq!(
                info,
                SourceInfo {
                    format: want,
                    width: 40,
                    height: 30
                },
                "{fmt:?}"
            );
        }
    }

    #[test]
    fn a_png_named_jpg_is_still_a_png() {
        // The name never reaches the engine; only the bytes decide.
        let png = encode(&gradient(20, 20), ImageFormat::Png);
        assert_eq!(probe(&png, &limits()).expect("probe").format, Format::Png);
    }

    #[test]
    fn text_and_other_formats_are_unsupported() {
        for bytes in [
            b"hello, this is not an image".as_slice(),
            b"",
            b"GIF89a\x10\x00\x10\x00",
            b"RIFF\x00\x00\x00\x00WAVEfmt ",
        ] {
            let err = probe(bytes, &limits()).expect_err("must fail");
            assert_eq!(err.code(), 3003, "{err}");
        }
    }

    #[test]
    fn a_10x10_png_is_too_small() {
        let err =
            probe(&encode(&gradient(10, 10), ImageFormat::Png), &limits()).expect_err("small");
        assert_eq!(err.code(), 3004);
        assert!(err.to_string().contains("10x10"), "{err}");
        // 15 is the smallest allowed side.
        probe(&encode(&gradient(15, 15), ImageFormat::Png), &limits()).expect("15x15 is fine");
        let err = probe(&encode(&gradient(14, 40), ImageFormat::Png), &limits()).expect_err("14");
        assert_eq!(err.code(), 3004);
    }

    #[test]
    fn a_huge_png_header_fails_fast() {
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let err = probe(&png, &limits()).expect_err("huge");
        assert_eq!(err.code(), 3004);
        assert_eq!(
            err.to_string(),
            "invalid dimensions: image is 100000x100000 (10000 MP); the limit is 50 MP"
        );
    }

    #[test]
    fn a_fake_60_mp_jpeg_header_fails_fast() {
        // SOI, an APP0 segment, then a baseline SOF0 claiming 10000x6000 and nothing else.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend_from_slice(b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00");
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        jpeg.extend_from_slice(&6000u16.to_be_bytes());
        jpeg.extend_from_slice(&10000u16.to_be_bytes());
        jpeg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        let err = probe(&jpeg, &limits()).expect_err("huge");
        assert_eq!(err.code(), 3004);
        assert!(err.to_string().contains("10000x6000 (60 MP)"), "{err}");
    }

    #[test]
    fn aspect_is_checked_only_for_model_kinds() {
        let wide = encode(&gradient(90, 30), ImageFormat::Png);
        probe(&wide, &limits()).expect("transform kinds accept 3:1");
        let model = Limits {
            model_aspect: true,
            ..Limits::default()
        };
        assert_eq!(probe(&wide, &model).expect_err("3:1").code(), 3004);
        let tall = encode(&gradient(20, 61), ImageFormat::Png);
        assert_eq!(probe(&tall, &model).expect_err("tall").code(), 3004);
        probe(&encode(&gradient(89, 30), ImageFormat::Png), &model).expect("just under 3:1");
    }

    #[test]
    fn unreadable_headers_are_decode_errors() {
        for bytes in [
            b"\xFF\xD8\xFF".as_slice(),
            b"\xFF\xD8\xFF\xE0\x00\x10JF",
            b"\x89PNG\r\n\x1a\n\x00\x00",
            b"RIFF\x00\x00\x00\x00WEBPVP8 ",
            b"\xFF\xD8\xFF\xDA\x00\x08",
        ] {
            let err = probe(bytes, &limits()).expect_err("must fail");
            assert_eq!(err.code(), 3017, "{bytes:?}: {err}");
        }
    }

    #[test]
    fn megapixels_read_naturally() {
        assert_eq!(megapixels(50_000_000), "50 MP");
        assert_eq!(megapixels(12_345_678), "12.3 MP");
        assert_eq!(megapixels(10_000_000_000), "10000 MP");
    }
}
