//! WebP output through libwebp: lossy at the recipe's quality, lossless only when asked.
//!
//! libwebp is compiled from the C sources vendored in libwebp-sys (the `cc` crate and the system C
//! compiler; no cmake, no pkg-config, no system libwebp) and called through the `webp` crate's safe
//! API, so this crate keeps `unsafe_code = "forbid"`. Reading WebP stays with `image`.

use webp::{Encoder, WebPConfig};

use crate::EngineError;

/// libwebp's default effort (`method`, 0 = fastest … 6 = smallest), the one libvips, Pillow and
/// cwebp use unless told otherwise.
const METHOD: i32 = 4;
/// For lossless output libwebp reads `quality` as how hard to compress, not as fidelity; 75 is its
/// default (cwebp -lossless, libvips), whatever quality the recipe carries.
const LOSSLESS_EFFORT: f32 = 75.0;

/// The rule every surface documents: WebP is lossless when asked (`lossless`) or at quality 100;
/// otherwise lossy at `quality`.
pub(crate) fn is_lossless(quality: u8, lossless: bool) -> bool {
    lossless || quality >= 100
}

/// Encodes 8-bit RGB or RGBA pixels (`rgba` says which) as WebP.
///
/// Lossy output is VP8 (plus an ALPH chunk losslessly compressed at full alpha quality when the
/// pixels have alpha); lossless output is VP8L and keeps every pixel exactly, including the colour
/// under fully transparent pixels.
pub(crate) fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    rgba: bool,
    quality: u8,
    lossless: bool,
) -> Result<Vec<u8>, EngineError> {
    let channels: u64 = if rgba { 4 } else { 3 };
    // The `webp` crate panics on a short buffer; the engine's buffers are exact, but say so here
    // rather than trust it.
    if u64::try_from(pixels.len()).ok() != Some(u64::from(width) * u64::from(height) * channels) {
        return Err(EngineError::Encode(format!(
            "internal: {} bytes are not {width}x{height} pixels of {channels} channels",
            pixels.len()
        )));
    }
    let mut config = WebPConfig::new()
        .map_err(|()| EngineError::Encode("libwebp refused its default settings".into()))?;
    config.method = METHOD;
    if is_lossless(quality, lossless) {
        config.lossless = 1;
        config.quality = LOSSLESS_EFFORT;
        config.exact = 1;
    } else {
        config.lossless = 0;
        config.quality = f32::from(quality.clamp(1, 100));
        config.alpha_compression = 1;
        config.alpha_quality = 100;
    }
    let encoder = if rgba {
        Encoder::from_rgba(pixels, width, height)
    } else {
        Encoder::from_rgb(pixels, width, height)
    };
    let out = encoder
        .encode_advanced(&config)
        .map_err(|e| EngineError::Encode(format!("webp encoder failed: {e:?}")))?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, GenericImageView, Rgba, RgbaImage};

    /// The chunk names after the RIFF/WEBP header, in order.
    fn chunks(webp: &[u8]) -> Vec<[u8; 4]> {
        assert_eq!(&webp[0..4], b"RIFF");
        assert_eq!(&webp[8..12], b"WEBP");
        let mut out = Vec::new();
        let mut at = 12;
        while at + 8 <= webp.len() {
            let mut fourcc = [0; 4];
            fourcc.copy_from_slice(&webp[at..at + 4]);
            out.push(fourcc);
            let len = u32::from_le_bytes([webp[at + 4], webp[at + 5], webp[at + 6], webp[at + 7]]);
            at += 8 + len as usize + (len as usize & 1);
        }
        out
    }

    /// The repository's sample product photo (1600×1200 JPEG), at 800×600 to keep the tests quick.
    fn photo() -> DynamicImage {
        let jpeg = include_bytes!("../../../assets/sample-product.jpg");
        let full = image::load_from_memory(jpeg).expect("sample photo decodes");
        crate::encode::resize_exact(&full, 800, 600, false).expect("resize")
    }

    fn encode_image(img: &DynamicImage, quality: u8, lossless: bool) -> Vec<u8> {
        let rgba = img.color().has_alpha();
        let raw = if rgba {
            img.to_rgba8().into_raw()
        } else {
            img.to_rgb8().into_raw()
        };
        encode(&raw, img.width(), img.height(), rgba, quality, lossless).expect("encode")
    }

    /// Mean absolute difference per channel, over RGB.
    fn mean_error(a: &DynamicImage, b: &DynamicImage) -> f64 {
        let (a, b) = (a.to_rgb8(), b.to_rgb8());
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn lossy_at_75_is_a_fraction_of_lossless_and_decodes_close() {
        let img = photo();
        let lossy = encode_image(&img, 75, false);
        let lossless = encode_image(&img, 75, true);
        assert_eq!(chunks(&lossy), [*b"VP8 "], "lossy is a plain VP8 frame");
        assert_eq!(chunks(&lossless), [*b"VP8L"]);
        assert!(
            lossy.len() * 4 < lossless.len(),
            "lossy {} bytes vs lossless {} bytes",
            lossy.len(),
            lossless.len()
        );
        let back = image::load_from_memory(&lossy).expect("decodes");
        assert_eq!(back.dimensions(), img.dimensions());
        let err = mean_error(&img, &back);
        assert!(err < 4.0, "mean error {err:.2} per channel");
    }

    #[test]
    fn quality_changes_the_size_monotonically() {
        let img = photo();
        let sizes: Vec<usize> = [30, 50, 75, 90]
            .into_iter()
            .map(|q| encode_image(&img, q, false).len())
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        let (q30, q90) = (
            image::load_from_memory(&encode_image(&img, 30, false)).expect("q30"),
            image::load_from_memory(&encode_image(&img, 90, false)).expect("q90"),
        );
        assert!(mean_error(&img, &q90) < mean_error(&img, &q30));
    }

    #[test]
    fn lossless_and_quality_100_are_bit_exact() {
        // Alpha from 0 to 255, with colour under the fully transparent pixels that must survive.
        let rgba = RgbaImage::from_fn(97, 61, |x, y| {
            Rgba([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x * y) % 251) as u8,
                if x < 10 { 0 } else { (x * 255 / 96) as u8 },
            ])
        });
        let rgba = DynamicImage::ImageRgba8(rgba);
        let rgb = DynamicImage::ImageRgb8(photo().to_rgb8());
        for img in [&rgba, &rgb] {
            for (quality, lossless) in [(85, true), (100, false), (1, true)] {
                let out = encode_image(img, quality, lossless);
                assert_eq!(chunks(&out), [*b"VP8L"], "q{quality} lossless={lossless}");
                let back = image::load_from_memory(&out).expect("decodes");
                assert_eq!(back.color().has_alpha(), img.color().has_alpha());
                if img.color().has_alpha() {
                    assert_eq!(back.to_rgba8(), img.to_rgba8());
                } else {
                    assert_eq!(back.to_rgb8(), img.to_rgb8());
                }
            }
        }
    }

    #[test]
    fn lossy_keeps_the_alpha_channel() {
        // A product cut out: opaque disc, feathered edge, transparent around it.
        let img = photo().to_rgba8();
        let (w, h) = img.dimensions();
        let (cx, cy, r) = (w as f64 / 2.0, h as f64 / 2.0, h as f64 / 3.0);
        let cut = RgbaImage::from_fn(w, h, |x, y| {
            let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
            let a = ((r + 8.0 - d) / 16.0).clamp(0.0, 1.0);
            let p = img.get_pixel(x, y).0;
            Rgba([p[0], p[1], p[2], (a * 255.0).round() as u8])
        });
        let cut = DynamicImage::ImageRgba8(cut);
        let out = encode_image(&cut, 75, false);
        assert_eq!(chunks(&out), [*b"VP8X", *b"ALPH", *b"VP8 "]);
        let back = image::load_from_memory(&out).expect("decodes");
        assert!(back.color().has_alpha());
        let (a, b) = (cut.to_rgba8(), back.to_rgba8());
        // Alpha is compressed losslessly at alpha quality 100.
        assert!(a.pixels().zip(b.pixels()).all(|(p, q)| p[3] == q[3]));
        assert_eq!(b.get_pixel(0, 0)[3], 0);
        assert_eq!(b.get_pixel(w / 2, h / 2)[3], 255);
    }

    #[test]
    fn the_rule_is_lossless_when_asked_or_at_100() {
        assert!(!is_lossless(75, false));
        assert!(!is_lossless(99, false));
        assert!(is_lossless(100, false));
        assert!(is_lossless(30, true));
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let err = encode(&[0; 11], 2, 2, false, 75, false).expect_err("short");
        assert_eq!(err.code(), 1006);
    }
}
