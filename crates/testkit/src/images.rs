//! Test images made with the `image` crate, plus hand-made hostile headers.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

/// A product-like photo: a dark red box on a plain light background.
pub fn product(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let inside = x > width / 4 && x < width * 3 / 4 && y > height / 5 && y < height * 4 / 5;
        if inside {
            Rgb([170, 30, 40])
        } else {
            Rgb([245, 245, 245])
        }
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

/// A real 640x480 JPEG.
pub fn jpeg() -> Vec<u8> {
    encode(&product(640, 480), ImageFormat::Jpeg)
}

/// A real PNG of the given size.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    encode(&product(width, height), ImageFormat::Png)
}

/// The first half of a real JPEG: the header reads fine, the pixels do not.
pub fn truncated_jpeg() -> Vec<u8> {
    let mut data = jpeg();
    data.truncate(data.len() / 2);
    data
}

/// A PNG whose header claims 10000x6000 (60 MP), followed by no real pixel data.
pub fn huge_png_header() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&10_000u32.to_be_bytes());
    ihdr.extend_from_slice(&6_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut data, b"IHDR", &ihdr);
    chunk(
        &mut data,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut data, b"IEND", &[]);
    data
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(body.len())
            .expect("small chunk")
            .to_be_bytes(),
    );
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Decodes stored bytes back into an image.
pub fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("stored output decodes")
}

/// A real photo the project did not make, from `var/photos/` (scikit-image's samples, installed by
/// `scripts/install-test-photos.sh`, as `make test` does): coffee.png (a cup on a wooden table),
/// chelsea.png (a cat), astronaut.png, rocket.jpg. Missing photos fail the test, never skip it.
pub fn real_photo(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../var/photos")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/install-test-photos.sh, as make test does)",
            path.display()
        )
    })
}
