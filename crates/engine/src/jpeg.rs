//! One walk over a JPEG's marker segments: frame size and colour components, the Adobe colour
//! transform, the EXIF block and the ICC profile chunks; plus the end-of-image check.
//!
//! The walk reads lengths only, never pixels, so it is the first thing that sees an untrusted JPEG;
//! `transform` does it once and hands the result to the decoders.

use crate::EngineError;

/// What the headers before the first scan say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JpegHeader<'a> {
    /// Width from the first start-of-frame.
    pub width: u32,
    /// Height from the first start-of-frame.
    pub height: u32,
    /// Colour components in the frame: 1 grey, 3 YCbCr (or RGB), 4 CMYK or YCCK.
    pub components: u8,
    /// The Adobe APP14 transform flag (0 none/CMYK/RGB, 1 YCbCr, 2 YCCK), when present.
    pub adobe_transform: Option<u8>,
    /// The first APP1 EXIF block (after "Exif\0\0").
    pub exif: Option<&'a [u8]>,
    /// APP2 ICC_PROFILE chunks as (sequence number, data), in file order.
    pub icc_chunks: Vec<(u8, &'a [u8])>,
}

impl JpegHeader<'_> {
    /// True for four-component (CMYK or YCCK) frames.
    pub fn is_cmyk(&self) -> bool {
        self.components == 4
    }

    /// The ICC profile put back together from its chunks (ordered by sequence number), if any.
    pub fn icc_profile(&self) -> Option<Vec<u8>> {
        if self.icc_chunks.is_empty() {
            return None;
        }
        let mut chunks = self.icc_chunks.clone();
        chunks.sort_by_key(|c| c.0);
        Some(
            chunks
                .into_iter()
                .flat_map(|c| c.1.iter().copied())
                .collect(),
        )
    }
}

fn truncated() -> EngineError {
    EngineError::Decode(
        "the JPEG header is truncated or corrupt; the file may be damaged or cut short".into(),
    )
}

/// Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Walks the segments up to the first scan. A frame header is required before the scan; segments
/// after the frame that cannot be read end the walk without an error (the decoders and
/// [`is_complete`] judge the rest).
pub(crate) fn read_header(b: &[u8]) -> Result<JpegHeader<'_>, EngineError> {
    let mut header = JpegHeader::default();
    let mut have_frame = false;
    let mut i = 2;
    loop {
        if b.get(i) != Some(&0xFF) {
            return if have_frame {
                Ok(header)
            } else {
                Err(truncated())
            };
        }
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return if have_frame {
                Ok(header)
            } else {
                Err(truncated())
            };
        };
        i += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 | 0xDA if have_frame => return Ok(header),
            0xD9 | 0xDA => {
                return Err(EngineError::Decode(
                    "the JPEG has no frame header before its image data".into(),
                ))
            }
            _ => {}
        }
        let len = match be16(b, i) {
            Some(len) if len >= 2 => usize::from(len),
            _ if have_frame => return Ok(header),
            _ => return Err(truncated()),
        };
        let body = b.get(i + 2..i + len);
        if is_sof(marker) && !have_frame {
            let sof = body.ok_or_else(truncated)?;
            if sof.len() < 6 {
                return Err(truncated());
            }
            header.height = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
            header.width = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
            header.components = sof[5];
            have_frame = true;
        } else if let Some(body) = body {
            match marker {
                0xE1 if header.exif.is_none() => {
                    header.exif = body.strip_prefix(b"Exif\0\0");
                }
                0xE2 => {
                    if let Some([seq, _count, data @ ..]) = body.strip_prefix(b"ICC_PROFILE\0") {
                        header.icc_chunks.push((*seq, data));
                    }
                }
                0xEE if body.len() >= 12 && body.starts_with(b"Adobe") => {
                    header.adobe_transform = Some(body[11]);
                }
                _ => {}
            }
        }
        i += len;
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// True when the entropy-coded data after the first scan reaches an end-of-image marker.
///
/// The JPEG decoders fill missing data with grey rather than failing, so a file cut in half would
/// otherwise "decode". Segments are skipped by their length, so an EOI inside an EXIF thumbnail does
/// not count, and trailing bytes after the real EOI are allowed. Entropy-coded data is skipped with
/// memchr (a 12 MP photo is several MB of it).
pub(crate) fn is_complete(b: &[u8]) -> bool {
    let mut i = 2;
    let mut in_scan = false;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            match memchr::memchr(0xFF, &b[i..]) {
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
                let Some(len) = be16(b, i + 2) else {
                    return false;
                };
                if marker == 0xDA {
                    in_scan = true;
                }
                i += 2 + usize::from(len).max(2);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{encode, gradient, jpeg_with_orientation};
    use image::ImageFormat;

    #[test]
    fn reads_size_components_and_exif() {
        let jpeg = jpeg_with_orientation(&gradient(40, 20), 6);
        let h = read_header(&jpeg).expect("header");
        assert_eq!((h.width, h.height, h.components), (40, 20, 3));
        assert!(h.exif.is_some_and(|e| e.starts_with(b"MM")));
        assert!(h.icc_profile().is_none());
        assert!(!h.is_cmyk());
    }

    #[test]
    fn icc_chunks_are_joined_in_sequence_order() {
        let jpeg = encode(&gradient(20, 20), ImageFormat::Jpeg);
        let mut out = jpeg[..2].to_vec();
        for (seq, data) in [(2u8, b"world".as_slice()), (1, b"hello ")] {
            let mut body = b"ICC_PROFILE\0".to_vec();
            body.extend_from_slice(&[seq, 2]);
            body.extend_from_slice(data);
            out.extend_from_slice(&[0xFF, 0xE2]);
            out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(&body);
        }
        out.extend_from_slice(&jpeg[2..]);
        let h = read_header(&out).expect("header");
        assert_eq!(h.icc_profile().as_deref(), Some(b"hello world".as_slice()));
    }

    #[test]
    fn a_scan_before_any_frame_is_refused() {
        let err = read_header(b"\xFF\xD8\xFF\xDA\x00\x08").expect_err("no frame");
        assert_eq!(err.code(), 3017);
    }

    #[test]
    fn completeness_needs_the_end_marker_after_a_scan() {
        let jpeg = encode(&gradient(64, 48), ImageFormat::Jpeg);
        assert!(is_complete(&jpeg));
        assert!(!is_complete(&jpeg[..jpeg.len() - 2]));
        assert!(!is_complete(&jpeg[..jpeg.len() / 2]));
        // An EOI before the first scan does not count.
        assert!(!is_complete(b"\xFF\xD8\xFF\xD9"));
    }
}
