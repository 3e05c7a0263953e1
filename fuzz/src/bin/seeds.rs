//! Writes the seed corpus: small images of every layout the engine reads, so the fuzzer starts from
//! valid files and mutates its way into the corners.
//! `cargo run --release --bin seeds -- corpus/validate_decode`.

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

fn photo(w: u32, h: u32) -> RgbImage {
    let mut seed = 0x1234_5678_u32;
    RgbImage::from_fn(w, h, |x, y| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let n = (seed >> 27) as u8;
        Rgb([
            (x * 255 / w) as u8 ^ n,
            (y * 255 / h) as u8,
            ((x + y) * 3) as u8,
        ])
    })
}

fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).expect("encode seed");
    out.into_inner()
}

fn jpeg_420(img: &RgbImage, q: u8, restart: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, q);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    if restart {
        e.set_restart_interval(2);
    }
    e.encode(
        img.as_raw(),
        img.width() as u16,
        img.height() as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .expect("jpeg seed");
    out
}

fn jpeg_progressive(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 80);
    e.set_progressive(true);
    e.encode(
        img.as_raw(),
        img.width() as u16,
        img.height() as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .expect("progressive seed");
    out
}

fn jpeg_cmyk(w: u16, h: u16, ycck: bool) -> Vec<u8> {
    let data: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .flat_map(|i| [(i * 7) as u8, (i * 3) as u8, 40, (i % 200) as u8])
        .collect();
    let mut out = Vec::new();
    let color = if ycck {
        jpeg_encoder::ColorType::CmykAsYcck
    } else {
        jpeg_encoder::ColorType::Cmyk
    };
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&data, w, h, color)
        .expect("cmyk seed");
    out
}

/// A JPEG with an EXIF orientation and an (arbitrary, one-chunk) ICC profile segment.
fn jpeg_with_segments(img: &RgbImage) -> Vec<u8> {
    let jpeg = jpeg_420(img, 75, false);
    let tiff: &[u8] = b"MM\x00\x2A\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00";
    let mut out = jpeg[..2].to_vec();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(tiff);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
    app2.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(&[0xFF, 0xE2]);
    out.extend_from_slice(&((app2.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app2);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png_with_icc(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = image::codecs::png::PngEncoder::new(&mut out);
    // Not a valid profile: the engine must shrug it off.
    let _ = e.set_icc_profile(b"not really an icc profile".to_vec());
    e.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .expect("png icc seed");
    out
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/validate_decode".into()),
    );
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let small = photo(40, 30);
    let wide = photo(200, 120);
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(32, 32, |x, y| {
        Rgba([x as u8 * 8, y as u8 * 8, 90, ((x + y) * 4) as u8])
    }));
    let rgb = DynamicImage::ImageRgb8(small.clone());
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("baseline-444.jpg", encode(&rgb, ImageFormat::Jpeg)),
        ("baseline-420.jpg", jpeg_420(&wide, 85, false)),
        ("restart-420.jpg", jpeg_420(&wide, 60, true)),
        ("progressive.jpg", jpeg_progressive(&small)),
        ("grey.jpg", encode(&rgb.grayscale(), ImageFormat::Jpeg)),
        ("cmyk.jpg", jpeg_cmyk(24, 20, false)),
        ("ycck.jpg", jpeg_cmyk(24, 20, true)),
        ("exif-icc.jpg", jpeg_with_segments(&small)),
        ("rgb.png", encode(&rgb, ImageFormat::Png)),
        ("rgba.png", encode(&rgba, ImageFormat::Png)),
        (
            "grey-alpha.png",
            encode(
                &DynamicImage::ImageLumaA8(rgba.to_luma_alpha8()),
                ImageFormat::Png,
            ),
        ),
        (
            "rgb16.png",
            encode(&DynamicImage::ImageRgb16(rgb.to_rgb16()), ImageFormat::Png),
        ),
        ("icc.png", png_with_icc(&small)),
        ("lossless.webp", encode(&rgba, ImageFormat::WebP)),
        ("rgb.webp", encode(&rgb, ImageFormat::WebP)),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
