//! Building blocks of case A (and C) timed on their own, so engine work can see what each codec
//! or step costs on this machine and what the alternatives in the dependency tree would give.

use std::hint::black_box;
use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use serde_json::{json, Value};

use crate::{median, round3};

/// Median wall time and mean CPU time (all threads) of `f` over `runs` runs after one warm-up.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Value, T)> {
    let mut out = f()?;
    let mut times = Vec::with_capacity(runs);
    let cpu_start = crate::cpu_ms();
    for _ in 0..runs {
        let start = Instant::now();
        let next = black_box(f()?);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        // The previous result is freed outside the timed part.
        out = next;
    }
    let cpu = (crate::cpu_ms() - cpu_start) / runs.max(1) as f64;
    times.sort_by(f64::total_cmp);
    Ok((
        json!({ "median_ms": round3(median(&times)), "cpu_ms_per_run": round3(cpu) }),
        out,
    ))
}

/// jpeg-decoder at the reduced size the engine would ask for (RGB out).
fn jpeg_decoder_scaled(bytes: &[u8], w: u16, h: u16) -> Result<(u32, u32, Vec<u8>)> {
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let (w, h) = d.scale(w, h)?;
    let pixels = d.decode()?;
    Ok((u32::from(w), u32::from(h), pixels))
}

fn lanczos(src: (u32, u32, Vec<u8>), w: u32, h: u32) -> Result<Vec<u8>> {
    let src = Image::from_vec_u8(src.0, src.1, src.2, PixelType::U8x3)?;
    let mut dst = Image::new(w, h, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new().resize(&src, &mut dst, &options)?;
    Ok(dst.into_vec())
}

fn image_jpeg(rgb: &[u8], w: u32, h: u32, q: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, q).write_image(rgb, w, h, ExtendedColorType::Rgb8)?;
    Ok(out)
}

fn jpeg_encoder_420(rgb: &[u8], w: u32, h: u32, q: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, q);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    e.encode(
        rgb,
        u16::try_from(w)?,
        u16::try_from(h)?,
        jpeg_encoder::ColorType::Rgb,
    )?;
    Ok(out)
}

pub fn run(photo: &Path, rgba_png: &Path, runs: usize) -> Result<Value> {
    let bytes = std::fs::read(photo).with_context(|| format!("reading {}", photo.display()))?;
    let mut steps = Vec::new();
    let mut add = |name: &str, mut v: Value| {
        v["step"] = json!(name);
        steps.push(v);
    };

    let (v, quarter) = time(runs, || jpeg_decoder_scaled(&bytes, 1000, 750))?;
    add(
        "jpeg-decoder 1/4-scale decode (1000×750), the pure-Rust build's path for A",
        v,
    );
    let (v, _) = time(runs, || jpeg_decoder_scaled(&bytes, 500, 375))?;
    add("jpeg-decoder 1/8-scale decode (500×375)", v);
    let (v, _) = time(runs, || {
        zune_jpeg::JpegDecoder::new(Cursor::new(&bytes))
            .decode()
            .map_err(|e| anyhow!("zune-jpeg: {e:?}"))
    })?;
    add(
        "zune-jpeg full decode (4000×3000), the engine's path for B",
        v,
    );
    let (v, small) = time(runs, || lanczos(quarter.clone(), 512, 384))?;
    add(
        "fast_image_resize Lanczos3 1000×750 → 512×384 (incl. copying the source)",
        v,
    );
    let (v, _) = time(runs, || image_jpeg(&small, 512, 384, 85))?;
    add(
        "image JpegEncoder 512×384 q85 (4:4:4), the engine's encoder before issue 5",
        v,
    );
    let (v, _) = time(runs, || jpeg_encoder_420(&small, 512, 384, 85))?;
    add("jpeg-encoder 512×384 q85 (4:2:0), the engine's encoder", v);

    let png = std::fs::read(rgba_png)?;
    let (v, rgba) = time(runs, || Ok(image::load_from_memory(&png)?.into_rgba8()))?;
    add("image PNG decode 1024×1024 RGBA (case C)", v);
    let (v, _) = time(runs, || Ok(flatten_from_fn(&rgba)))?;
    add(
        "flatten on white, RgbImage::from_fn + get_pixel (the engine before issue 5, case C)",
        v,
    );
    let (v, flat) = time(runs, || Ok(flatten_chunks(rgba.as_raw())))?;
    add(
        "flatten on white, chunks_exact slice loop, as in the engine (case C)",
        v,
    );
    let (v, _) = time(runs, || image_jpeg(&flat, 1024, 1024, 85))?;
    add("image JpegEncoder 1024×1024 q85 (4:4:4) (case C)", v);
    let (v, _) = time(runs, || jpeg_encoder_420(&flat, 1024, 1024, 85))?;
    add("jpeg-encoder 1024×1024 q85 (4:2:0) (case C)", v);
    Ok(Value::Array(steps))
}

/// The engine's former `flatten_on_white`: per-pixel closure with bounds-checked `get_pixel`.
fn flatten_from_fn(rgba: &image::RgbaImage) -> image::RgbImage {
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

/// Composites RGBA over white with a plain slice loop (as the engine's `flatten_on_white` does).
fn flatten_chunks(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        let a = u32::from(p[3]);
        for &c in &p[..3] {
            out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    out
}
