//! Draws the bundled sample product photo (a red mug on a light studio sweep) and writes it as JPEG.
//!
//! `cargo run -p atelier-engine --example make_sample -- assets/sample-product.jpg`
//!
//! Deterministic: the same bytes every run (a tiny LCG stands in for sensor noise).

use std::f32::consts::PI;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, Rgb, RgbImage};

const W: u32 = 1600;
const H: u32 = 1200;
/// Samples per pixel side, for anti-aliased edges.
const SS: u32 = 3;

/// Mug geometry in pixels.
const CX: f32 = 760.0;
const R: f32 = 290.0;
const TOP: f32 = 330.0;
const BOTTOM: f32 = 900.0;
const RIM_RY: f32 = 62.0;
const HANDLE_CX: f32 = CX + R + 40.0;
const HANDLE_CY: f32 = 600.0;
/// Where the badge sits on the mug, in radians from the front.
const BADGE_ANGLE: f32 = -0.15;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: make_sample OUTPUT.jpg")?;
    let mut seed: u32 = 0x1234_5678;
    let img = RgbImage::from_fn(W, H, |x, y| {
        let mut acc = [0.0f32; 3];
        for sy in 0..SS {
            for sx in 0..SS {
                let fx = x as f32 + (sx as f32 + 0.5) / SS as f32;
                let fy = y as f32 + (sy as f32 + 0.5) / SS as f32;
                let c = shade(fx, fy);
                acc.iter_mut().zip(c).for_each(|(a, c)| *a += c);
            }
        }
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = ((seed >> 16) & 0xFF) as f32 / 255.0 * 5.0 - 2.5;
        let n = (SS * SS) as f32;
        Rgb(acc.map(|a| (a / n + noise).clamp(0.0, 255.0).round() as u8))
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).write_image(
        img.as_raw(),
        W,
        H,
        image::ExtendedColorType::Rgb8,
    )?;
    std::fs::write(&path, &out)?;
    println!("wrote {path} ({} bytes, {W}x{H})", out.len());
    Ok(())
}

/// The colour seen at a sub-pixel position: mug body, rim, handle, or the shadowed background.
fn shade(x: f32, y: f32) -> [f32; 3] {
    let dx = (x - CX) / R;
    let body_bottom = BOTTOM + RIM_RY * (1.0 - dx * dx).max(0.0).sqrt();
    let top_ellipse = dx * dx + ((y - TOP) / RIM_RY).powi(2);
    if dx.abs() <= 1.0 && top_ellipse <= 1.0 {
        return rim(x, y);
    }
    if dx.abs() <= 1.0 && y >= TOP && y <= body_bottom {
        return body(dx, y);
    }
    if let Some(c) = handle(x, y) {
        return c;
    }
    background(x, y)
}

/// Glossy red ceramic: diffuse from the upper left, a sharp highlight stripe and a soft rim light.
fn body(dx: f32, y: f32) -> [f32; 3] {
    let nx = dx;
    let nz = (1.0 - nx * nx).max(0.0).sqrt();
    let light = normalize([-0.55, -0.35, 0.75]);
    let diffuse = (nx * light[0] + nz * light[2]).max(0.0);
    let half = normalize([light[0], light[1], light[2] + 1.0]);
    let spec = (nx * half[0] + nz * half[2]).max(0.0).powf(60.0);
    let rim_light = (nx.max(0.0)).powf(6.0) * 0.25;
    // Darker towards the foot (ambient occlusion) and just under the rim.
    let t = ((y - TOP) / (BOTTOM - TOP)).clamp(0.0, 1.0);
    let occlusion = 1.0 - 0.18 * t.powi(3) - 0.08 * (-(y - TOP - RIM_RY) / 25.0).exp().min(1.0);
    let base = [196.0, 28.0, 36.0];
    let lit = 0.3 + 0.85 * diffuse + rim_light;
    let mut c = base.map(|b| b * lit * occlusion);
    let logo = logo(dx, y);
    if logo > 0.0 {
        let cream = [
            238.0 * lit.min(1.05),
            228.0 * lit.min(1.05),
            210.0 * lit.min(1.05),
        ];
        c = mix(c, cream.map(|v| v * occlusion), logo);
    }
    mix(c, [255.0, 250.0, 248.0], (spec * 0.85).min(1.0))
}

/// Coverage (0..1) of a cream badge, a disc inside a ring, laid on the curved front of the mug.
fn logo(dx: f32, y: f32) -> f32 {
    // Arc length along the surface, so the badge foreshortens towards the sides.
    let ox = R * (dx.clamp(-1.0, 1.0).asin() - BADGE_ANGLE);
    let oy = y - 610.0;
    let d = (ox * ox + oy * oy).sqrt();
    let ring = (6.0 - (d - 95.0).abs()).clamp(0.0, 1.0);
    let disc = (55.0 - d).clamp(0.0, 1.0);
    ring.max(disc)
}

/// The top opening: a thick lit lip around a dark interior.
fn rim(x: f32, y: f32) -> [f32; 3] {
    let dx = (x - CX) / (R - 20.0);
    let dy = (y - TOP) / (RIM_RY - 9.0);
    let inner = dx * dx + dy * dy;
    if inner <= 1.0 {
        // Interior wall: lit at the back (top of the ellipse), darker at the front.
        let back = (-dy).clamp(-1.0, 1.0) * 0.5 + 0.5;
        let v = 0.25 + 0.45 * back;
        [150.0 * v, 22.0 * v, 28.0 * v]
    } else {
        let along = ((x - CX) / R).clamp(-1.0, 1.0);
        let v = 0.85 + 0.25 * (-along).max(0.0);
        [214.0 * v, 52.0 * v, 58.0 * v]
    }
}

/// A D-shaped handle on the right: an elliptical tube with shading across its thickness.
fn handle(x: f32, y: f32) -> Option<[f32; 3]> {
    let ex = (x - HANDLE_CX) / 150.0;
    let ey = (y - HANDLE_CY) / 190.0;
    let outer = (ex * ex + ey * ey).sqrt();
    let ix = (x - HANDLE_CX) / 88.0;
    let iy = (y - HANDLE_CY) / 124.0;
    let inner = (ix * ix + iy * iy).sqrt();
    if outer > 1.0 || inner < 1.0 {
        return None;
    }
    // Position across the tube: 0 at the inner edge, 1 at the outer edge.
    let t = ((1.0 - 1.0 / inner) / (1.0 / outer - 1.0 / inner)).clamp(0.0, 1.0);
    let round = (PI * t).sin();
    let from_light = 0.5 - 0.5 * ey.clamp(-1.0, 1.0);
    let v = 0.25 + 0.6 * round * (0.6 + 0.4 * from_light);
    let spec = (round * (1.0 - t)).powf(8.0) * 0.5;
    Some(mix(
        [186.0 * v, 26.0 * v, 34.0 * v],
        [250.0, 245.0, 245.0],
        spec,
    ))
}

/// A light studio sweep: brighter at the top, a soft vignette, and the mug's shadow on the floor.
fn background(x: f32, y: f32) -> [f32; 3] {
    let (u, v) = (x / W as f32 - 0.5, y / H as f32 - 0.5);
    let sweep = 1.0 - 0.06 * (v + 0.5);
    let vignette = 1.0 - 0.07 * (u * u + v * v);
    let mut c = [234.0, 232.0, 229.0].map(|b| b * sweep * vignette);
    // Broad soft shadow cast to the lower right, and a tight contact shadow at the foot.
    let sx = (x - (CX + 70.0)) / 420.0;
    let sy = (y - (BOTTOM + RIM_RY * 0.6)) / 85.0;
    let soft = (-(sx * sx + sy * sy) * 1.6).exp() * 0.22;
    let cx = (x - CX) / (R * 1.02);
    let cy = (y - (BOTTOM + RIM_RY * 0.95)) / 18.0;
    let contact = (-(cx.powi(8) + cy * cy) * 1.0).exp() * 0.25;
    let dark = 1.0 - (soft + contact).min(0.45);
    c.iter_mut().for_each(|v| *v *= dark);
    c
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

fn normalize(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|c| c / n)
}
