//! Deterministic test images: photo-like JPEGs (gradients, shaded shapes, texture and per-pixel noise
//! from a small LCG, so the codecs do real work) and an RGBA PNG with soft alpha edges and a
//! semi-transparent shadow.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// Bumped whenever the generators change, so a stale cached file is never reused.
const VERSION: u32 = 1;
/// JPEG quality of the generated photos.
const PHOTO_QUALITY: u8 = 90;

/// One generated input.
pub struct Input {
    /// Short name used in the JSON ("photo12", "photo50", "rgba").
    pub key: &'static str,
    /// Where the file is.
    pub path: PathBuf,
    /// Width and height in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The inputs every case uses: 12 MP JPEG, 50 MP JPEG, 1024² RGBA PNG.
pub fn inputs(dir: &Path) -> [Input; 3] {
    let make = |key, name: &str, width, height| Input {
        key,
        path: dir.join(name.replace("{v}", &VERSION.to_string())),
        width,
        height,
    };
    [
        make("photo12", "photo-4000x3000-q90-v{v}.jpg", 4000, 3000),
        make("photo50", "photo-8660x5773-q90-v{v}.jpg", 8660, 5773),
        make("rgba", "rgba-1024x1024-v{v}.png", 1024, 1024),
    ]
}

/// Writes any input that is missing (they are deterministic, so an existing file is the same).
pub fn generate(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for input in inputs(dir) {
        if input.path.exists() {
            continue;
        }
        let tmp = input.path.with_extension("tmp");
        let file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::new(file);
        if input.key == "rgba" {
            let pixels = rgba(input.width, input.height);
            PngEncoder::new(&mut out).write_image(
                &pixels,
                input.width,
                input.height,
                ExtendedColorType::Rgba8,
            )?;
        } else {
            // 4:2:0 chroma subsampling, as phone and most camera JPEGs use.
            let pixels = photo(input.width, input.height);
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, PHOTO_QUALITY);
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
            encoder.encode(
                &pixels,
                u16::try_from(input.width)?,
                u16::try_from(input.height)?,
                jpeg_encoder::ColorType::Rgb,
            )?;
        }
        out.flush()?;
        drop(out);
        fs::rename(&tmp, &input.path)?;
        eprintln!("generated {}", input.path.display());
    }
    Ok(())
}

/// A tiny linear congruential generator (Numerical Recipes constants).
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }

    /// Three independent-looking values in -amp..=amp, one per channel.
    fn noise3(&mut self, amp: f32) -> [f32; 3] {
        let r = self.next();
        let s = self.next();
        let to = |b: u32| ((b & 0xFF) as f32 / 255.0 - 0.5) * 2.0 * amp;
        [to(r >> 24), to(r >> 16), to(s >> 24)]
    }
}

fn clamp8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A landscape-like RGB image: sky gradient, a wavy horizon, textured ground, shaded discs and
/// stripes, plus grain. Detail is per pixel (not per fraction of the frame) so a 50 MP image is as
/// busy as a 12 MP one.
pub fn photo(w: u32, h: u32) -> Vec<u8> {
    let (wf, hf) = (w as f32, h as f32);
    let mut rng = Lcg(0x1234_5678);
    // Separable texture tables keep the per-pixel work to a few multiplies.
    let sx: Vec<f32> = (0..w).map(|x| (x as f32 * 0.031).sin()).collect();
    let cx: Vec<f32> = (0..w).map(|x| (x as f32 * 0.0071).cos()).collect();
    let sy: Vec<f32> = (0..h).map(|y| (y as f32 * 0.047).sin()).collect();
    let cy: Vec<f32> = (0..h).map(|y| (y as f32 * 0.0113).cos()).collect();
    let horizon: Vec<f32> = (0..w)
        .map(|x| {
            let u = x as f32 / wf;
            hf * (0.42 + 0.06 * (u * 7.0).sin() + 0.02 * (u * 31.0).sin())
        })
        .collect();
    // Discs: centre (fraction of width, fraction of height), radius (fraction of height), colour.
    let discs: [(f32, f32, f32, [f32; 3]); 5] = [
        (0.22, 0.62, 0.16, [190.0, 60.0, 45.0]),
        (0.55, 0.70, 0.12, [230.0, 200.0, 70.0]),
        (0.78, 0.55, 0.20, [70.0, 90.0, 170.0]),
        (0.40, 0.25, 0.07, [250.0, 245.0, 225.0]),
        (0.90, 0.85, 0.09, [120.0, 60.0, 140.0]),
    ];
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h {
        let yf = y as f32;
        let v = yf / hf;
        for x in 0..w {
            let xi = x as usize;
            let xf = x as f32;
            let mut px = if yf < horizon[xi] {
                // Sky: deep blue at the top to pale near the horizon, with faint cloud banding.
                let t = yf / horizon[xi];
                let cloud = 12.0 * (sx[xi] * cy[y as usize] + cx[xi] * 0.5).max(0.0);
                [
                    70.0 + 120.0 * t + cloud,
                    110.0 + 100.0 * t + cloud,
                    200.0 + 40.0 * t + cloud,
                ]
            } else {
                // Ground: green-brown with grass-like texture.
                let tex = 28.0 * sx[xi] * sy[y as usize] + 14.0 * cx[xi] * cy[y as usize];
                let depth = (v - 0.4) * 60.0;
                [
                    80.0 + depth + tex,
                    120.0 + depth * 0.5 + tex * 1.2,
                    50.0 + tex * 0.6,
                ]
            };
            for (du, dv, r, colour) in discs {
                let (dx, dy) = (xf - du * wf, yf - dv * hf);
                let rad = r * hf;
                let d2 = (dx * dx + dy * dy) / (rad * rad);
                if d2 < 1.0 {
                    // Lit from the top left, with stripes across the body.
                    let light = 0.55 + 0.45 * (1.0 - d2).sqrt() - 0.25 * (dx + dy) / (2.0 * rad);
                    let stripe = if ((xf + yf * 0.5) * 0.09).sin() > 0.6 {
                        0.85
                    } else {
                        1.0
                    };
                    px = colour.map(|c| c * light * stripe);
                }
            }
            let n = rng.noise3(9.0);
            out.extend_from_slice(&[
                clamp8(px[0] + n[0]),
                clamp8(px[1] + n[1]),
                clamp8(px[2] + n[2]),
            ]);
        }
    }
    out
}

/// An RGBA product cut-out: a rounded, shaded body with a feathered edge, a semi-transparent
/// shadow under it, a transparent background, and an alpha ramp along the top.
pub fn rgba(w: u32, h: u32) -> Vec<u8> {
    let (wf, hf) = (w as f32, h as f32);
    let mut rng = Lcg(0x9E37_79B9);
    let mut out = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f32 / wf, y as f32 / hf);
            // Signed distance (in pixels) to a rounded rectangle centred a bit above the middle.
            let (qx, qy) = (
                (u - 0.5).abs() * wf - 0.28 * wf,
                (v - 0.45).abs() * hf - 0.3 * hf,
            );
            let corner = 0.08 * wf;
            let (ox, oy) = ((qx + corner).max(0.0), (qy + corner).max(0.0));
            let dist =
                (ox * ox + oy * oy).sqrt() + (qx + corner).max(qy + corner).min(0.0) - corner;
            let body = (0.5 - dist / 6.0).clamp(0.0, 1.0);
            // Shadow: a soft ellipse under the body.
            let sd = ((u - 0.5) / 0.34).powi(2) + ((v - 0.82) / 0.06).powi(2);
            let shadow = 0.55 * (1.0 - sd).clamp(0.0, 1.0);
            // A ramp along the top edge, so partial alpha is everywhere there.
            let ramp = if v < 0.1 { 0.6 * u } else { 0.0 };
            let n = rng.noise3(6.0);
            let shade = 0.6 + 0.4 * (1.0 - v) + 0.1 * (u * 40.0).sin();
            let body_rgb = [200.0 * shade, 40.0 + 80.0 * u, 60.0 + 120.0 * v];
            let under = if shadow > 0.0 {
                [20.0, 20.0, 25.0]
            } else {
                [240.0 * u, 180.0, 255.0 * v]
            };
            let alpha = body + (1.0 - body) * shadow.max(ramp);
            let rgb: [f32; 3] = std::array::from_fn(|i| {
                if alpha > 0.0 {
                    (body * body_rgb[i] + (alpha - body) * under[i]) / alpha + n[i]
                } else {
                    0.0
                }
            });
            out.extend_from_slice(&[
                clamp8(rgb[0]),
                clamp8(rgb[1]),
                clamp8(rgb[2]),
                clamp8(alpha * 255.0),
            ]);
        }
    }
    out
}
