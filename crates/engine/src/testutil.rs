//! Test fixtures built in memory: gradients, encoded files, EXIF JPEGs and a synthetic product photo.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// A smooth RGB gradient of the given size.
pub fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            ((x + y) * 127 / (w + h).max(1)) as u8,
        ])
    }))
}

/// The image encoded with the `image` crate's defaults.
pub fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).expect("encode fixture");
    out.into_inner()
}

/// A JPEG whose APP1 segment holds a minimal EXIF block with the given orientation.
pub fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(img, ImageFormat::Jpeg);
    let mut tiff = b"MM\x00\x2A\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A deterministic small product shot: a shaded red rounded body with a highlight and a soft
/// shadow, on a slightly graded, slightly noisy light-grey background.
pub fn product_photo(w: u32, h: u32) -> DynamicImage {
    let mut seed = 0x2545_F491_u32;
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (rx, ry) = (w as f32 * 0.28, h as f32 * 0.30);
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = ((seed >> 24) as f32 / 255.0 - 0.5) * 6.0;
        let (fx, fy) = (x as f32, y as f32);
        let grade = 8.0 * (fy / h as f32 - 0.5);
        let mut px = [218.0 - grade, 218.0 - grade, 222.0 - grade];
        // Soft shadow under the body.
        let sd = ((fx - cx) / (rx * 1.1)).powi(2) + ((fy - cy - ry * 0.9) / (ry * 0.35)).powi(2);
        let shade = 1.0 - 0.18 * (1.0 - sd).clamp(0.0, 1.0);
        px.iter_mut().for_each(|c| *c *= shade);
        let (u, v) = ((fx - cx) / rx, (fy - cy) / ry);
        let d = u.powi(4) + v.powi(4);
        if d <= 1.0 {
            let light = (0.75 - 0.35 * u - 0.25 * v).clamp(0.3, 1.0);
            px = [
                200.0 * light + 30.0,
                40.0 * light + 10.0,
                45.0 * light + 10.0,
            ];
            let hl = ((u + 0.45).powi(2) + (v + 0.5).powi(2)) / 0.02;
            if hl < 1.0 {
                let k = 1.0 - hl;
                px.iter_mut().for_each(|c| *c += (250.0 - *c) * k);
            }
        }
        Rgb(px.map(|c| (c + noise).clamp(0.0, 255.0) as u8))
    }))
}

/// A CMYK JPEG as Photoshop writes them (Adobe APP14, inverted inks), from ink amounts (255 = full
/// ink) per pixel; `ycck` stores it as YCCK (APP14 transform 2) instead of plain CMYK.
pub fn cmyk_jpeg(w: u16, h: u16, ycck: bool, ink: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
    let mut data = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for y in 0..u32::from(h) {
        for x in 0..u32::from(w) {
            data.extend_from_slice(&ink(x, y));
        }
    }
    let mut out = Vec::new();
    let color = if ycck {
        jpeg_encoder::ColorType::CmykAsYcck
    } else {
        jpeg_encoder::ColorType::Cmyk
    };
    jpeg_encoder::Encoder::new(&mut out, 95)
        .encode(&data, w, h, color)
        .expect("encode CMYK fixture");
    out
}

/// The image encoded as `fmt` with `icc` embedded (JPEG APP2, PNG iCCP or WebP ICCP).
pub fn encode_with_icc(img: &DynamicImage, fmt: ImageFormat, icc: &[u8]) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let (w, h, color) = (img.width(), img.height(), img.color().into());
    let bytes = img.as_bytes();
    match fmt {
        ImageFormat::Jpeg => {
            let mut e = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
            e.set_icc_profile(icc.to_vec()).expect("jpeg icc");
            e.write_image(bytes, w, h, color).expect("jpeg");
        }
        ImageFormat::Png => {
            let mut e = image::codecs::png::PngEncoder::new(&mut out);
            e.set_icc_profile(icc.to_vec()).expect("png icc");
            e.write_image(bytes, w, h, color).expect("png");
        }
        _ => {
            let mut e = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            e.set_icc_profile(icc.to_vec()).expect("webp icc");
            e.write_image(bytes, w, h, color).expect("webp");
        }
    }
    out
}

/// A PNG written by the png crate directly, for layouts `image` does not write (palette).
pub fn raw_png(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<(&[u8], &[u8])>,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(color);
    e.set_depth(depth);
    if let Some((plte, trns)) = palette {
        e.set_palette(plte.to_vec());
        e.set_trns(trns.to_vec());
    }
    let mut writer = e.write_header().expect("png header");
    writer.write_image_data(data).expect("png data");
    writer.finish().expect("png end");
    out
}
