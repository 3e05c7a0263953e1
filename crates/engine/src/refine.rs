//! From a segmentation model's low-resolution mask to a full-resolution alpha, and from that alpha to
//! a cut-out without a halo of the old background.
//!
//! For a photo larger than the mask (320² or 1024²), the mask is brought to a working resolution,
//! then refined against the photo with a colour guided filter (He, Sun and Tang): inside each
//! window alpha is modelled as a linear function of the pixel's colour, so its edge moves onto the
//! photo's own edge instead of staying a blurry upscale. The filter's coefficients are smooth, so
//! they are computed at the working resolution and applied to the full-resolution colours ("fast
//! guided filter"), which keeps 12 MP photos cheap. A photo no larger than the mask gets the mask
//! resampled (Lanczos3). Edge colours are then estimated by blur fusion (Forte and Pitié): the
//! foreground and background colours near each pixel are alpha-weighted local means, and the
//! pixel's colour is corrected by what the composite equation says is left over.

use image::{GrayImage, RgbImage, RgbaImage};

use crate::EngineError;

/// Longest side of the working resolution of the guided filter.
const WORK_SIDE: u32 = 1536;
/// Regularisation of the guided filter (colours in 0..1): larger keeps more of the model's own edge.
const EPS: f32 = 1e-3;
/// How much the refined alpha is steepened around 0.5: the guided filter leaves edge windows a
/// little short of 0 and 1 on either side, which would read as a faint ghost.
const GAIN: f32 = 1.6;

/// A segmentation model's answer: one value per pixel in 0..1 (1 = subject), row-major, at the
/// model's resolution (which need not have the photo's aspect ratio).
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentationMask {
    /// Width of the mask.
    pub width: u32,
    /// Height of the mask.
    pub height: u32,
    /// `width`×`height` values in 0..1.
    pub values: Vec<f32>,
}

impl SegmentationMask {
    /// Checks the sizes and that every value is a number in 0..1 (clamping tiny overshoots).
    pub fn new(width: u32, height: u32, mut values: Vec<f32>) -> Result<Self, EngineError> {
        if width == 0 || height == 0 || values.len() as u64 != u64::from(width) * u64::from(height)
        {
            return Err(EngineError::Matting(format!(
                "the mask has {} values, not {width}x{height}",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(EngineError::Matting(
                "the mask holds values that are not numbers".into(),
            ));
        }
        values.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        Ok(Self {
            width,
            height,
            values,
        })
    }

    /// How sure the model was, in 0..1: 1 when every pixel is clearly subject or clearly
    /// background, lower the more pixels sit near 0.5; and low when the model found no subject at
    /// all or took the whole frame for one.
    pub fn confidence(&self) -> f32 {
        let n = self.values.len() as f32;
        let undecided: f32 = self
            .values
            .iter()
            .map(|&v| 4.0 * v * (1.0 - v))
            .sum::<f32>()
            / n;
        let coverage = self.values.iter().filter(|&&v| v >= 0.5).count() as f32 / n;
        let decided = (1.0 - undecided).clamp(0.0, 1.0);
        if !(0.002..=0.995).contains(&coverage) {
            decided * 0.1
        } else {
            decided
        }
    }
}

/// The mask refined to the photo's full resolution (0 = background, 255 = subject).
///
/// A photo no larger than the mask (on its long side) gets the mask itself, resampled with
/// Lanczos3 as the reference pipeline does: the mask already resolves finer than the photo's
/// pixels, so there is no blurry upscale to correct, and a guided filter (or a bilinear sample of
/// the mask) would only thin out structures a pixel or two wide.
pub(crate) fn refine(mask: &SegmentationMask, rgb: &RgbImage) -> Result<GrayImage, EngineError> {
    let (w, h) = rgb.dimensions();
    if w.max(h) <= mask.width.max(mask.height) {
        return resample_mask(mask, w, h);
    }
    let (ww, wh) = crate::encode::fit_within(w, h, WORK_SIDE.min(w.max(h)));
    let guide = shrink(rgb, ww, wh)?;
    let p = bilinear(&mask.values, mask.width, mask.height, ww, wh);
    // The model's uncertainty is about one mask pixel; the windows span a few of them.
    let scale = ww.max(wh) as f32 / mask.width.max(mask.height) as f32;
    let r = ((2.0 * scale).ceil() as usize).clamp(2, 24);
    let (coef_a, coef_b) = guided_coefficients(guide.as_ref(), &p, r);
    let (wu, hu) = (ww as usize, wh as usize);
    let mean_a: [Vec<f32>; 3] = coef_a.map(|a| box_mean(&a, wu, hu, r));
    let mean_b = box_mean(&coef_b, wu, hu, r);
    // The coefficients are brought to full resolution one row at a time: four full-resolution
    // float planes would be 16 bytes a pixel (190 MB at 12 MP), mostly spent faulting pages in.
    let axes = Axes::new(ww, wh, w, h);
    let mut rows_a = [
        Rows::new(&mean_a[0], &axes),
        Rows::new(&mean_a[1], &axes),
        Rows::new(&mean_a[2], &axes),
    ];
    let mut rows_b = Rows::new(&mean_b, &axes);
    let (wf, hf) = (w as usize, h as usize);
    let mut alpha = vec![0u8; wf * hf];
    for (y, (out, line)) in alpha
        .chunks_exact_mut(wf)
        .zip(rgb.as_raw().chunks_exact(wf * 3))
        .enumerate()
    {
        let [ra, ga, ba] = &mut rows_a;
        let full_a = [ra.row(&axes, y), ga.row(&axes, y), ba.row(&axes, y)];
        let full_b = rows_b.row(&axes, y);
        for (x, (o, px)) in out.iter_mut().zip(line.chunks_exact(3)).enumerate() {
            let q = full_b[x]
                + (0..3)
                    .map(|c| full_a[c][x] * f32::from(px[c]) / 255.0)
                    .sum::<f32>();
            let steep = ((q - 0.5) * GAIN + 0.5).clamp(0.0, 1.0);
            *o = (steep * 255.0).round() as u8;
        }
    }
    GrayImage::from_raw(w, h, alpha)
        .ok_or_else(|| EngineError::Encode("internal: alpha size mismatch".into()))
}

/// The mask resized to `w`×`h` with Lanczos3 (area-aware when it shrinks), steepened, as 0..255.
fn resample_mask(mask: &SegmentationMask, w: u32, h: u32) -> Result<GrayImage, EngineError> {
    use fast_image_resize::images::Image;
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let failed = |e: &dyn std::fmt::Display| EngineError::Encode(format!("mask resize: {e}"));
    let bytes: Vec<u8> = mask.values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let src = Image::from_vec_u8(mask.width, mask.height, bytes, PixelType::F32)
        .map_err(|e| failed(&e))?;
    let mut dst = Image::new(w, h, PixelType::F32);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| failed(&e))?;
    let alpha = dst
        .buffer()
        .chunks_exact(4)
        .map(|b| {
            let v = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            // Steepened as the refined alpha is, so the model's faint haze does not show as a
            // ghost around the subject; the 0.5 contour stays where the model put it.
            let steep = ((v - 0.5) * GAIN + 0.5).clamp(0.0, 1.0);
            (steep * 255.0).round() as u8
        })
        .collect();
    GrayImage::from_raw(w, h, alpha)
        .ok_or_else(|| EngineError::Encode("internal: alpha size mismatch".into()))
}

/// `img` resized to `w`×`h` (Lanczos3, as the engine resizes elsewhere), or borrowed as it is.
fn shrink<P>(
    img: &image::ImageBuffer<P, Vec<u8>>,
    w: u32,
    h: u32,
) -> Result<std::borrow::Cow<'_, image::ImageBuffer<P, Vec<u8>>>, EngineError>
where
    P: image::Pixel<Subpixel = u8>,
    image::ImageBuffer<P, Vec<u8>>:
        fast_image_resize::IntoImageView + fast_image_resize::IntoImageViewMut + Clone,
{
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    if img.dimensions() == (w, h) {
        return Ok(std::borrow::Cow::Borrowed(img));
    }
    let mut dst = image::ImageBuffer::<P, Vec<u8>>::new(w, h);
    Resizer::new()
        .resize(
            img,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| EngineError::Encode(format!("resize to {w}x{h} failed: {e}")))?;
    Ok(std::borrow::Cow::Owned(dst))
}

/// The per-window linear coefficients of the colour guided filter: alpha ≈ a·I + b.
fn guided_coefficients(guide: &RgbImage, p: &[f32], r: usize) -> ([Vec<f32>; 3], Vec<f32>) {
    let (w, h) = (guide.width() as usize, guide.height() as usize);
    let n = w * h;
    let chan: [Vec<f32>; 3] = std::array::from_fn(|c| {
        guide
            .as_raw()
            .chunks_exact(3)
            .map(|px| f32::from(px[c]) / 255.0)
            .collect()
    });
    let mean = |v: &[f32]| box_mean(v, w, h, r);
    let product =
        |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x * y).collect() };
    let mi: [Vec<f32>; 3] = std::array::from_fn(|c| mean(&chan[c]));
    let mp = mean(p);
    let mip: [Vec<f32>; 3] = std::array::from_fn(|c| mean(&product(&chan[c], p)));
    // Covariance of the colours in each window: rr, rg, rb, gg, gb, bb.
    let pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    let cov: [Vec<f32>; 6] = std::array::from_fn(|k| {
        let (i, j) = pairs[k];
        let m = mean(&product(&chan[i], &chan[j]));
        m.iter()
            .enumerate()
            .map(|(x, v)| v - mi[i][x] * mi[j][x])
            .collect()
    });
    let mut a: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0.0; n]);
    let mut b = vec![0.0; n];
    for x in 0..n {
        let (rr, rg, rb, gg, gb, bb) = (
            cov[0][x] + EPS,
            cov[1][x],
            cov[2][x],
            cov[3][x] + EPS,
            cov[4][x],
            cov[5][x] + EPS,
        );
        let cp = [0, 1, 2].map(|c| mip[c][x] - mi[c][x] * mp[x]);
        // Inverse of the symmetric 3×3 matrix by cofactors.
        let inv = [
            gg * bb - gb * gb,
            gb * rb - rg * bb,
            rg * gb - gg * rb,
            rr * bb - rb * rb,
            rg * rb - rr * gb,
            rr * gg - rg * rg,
        ];
        let det = rr * inv[0] + rg * inv[1] + rb * inv[2];
        let (ar, ag, ab) = if det.abs() > 1e-12 {
            (
                (inv[0] * cp[0] + inv[1] * cp[1] + inv[2] * cp[2]) / det,
                (inv[1] * cp[0] + inv[3] * cp[1] + inv[4] * cp[2]) / det,
                (inv[2] * cp[0] + inv[4] * cp[1] + inv[5] * cp[2]) / det,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        a[0][x] = ar;
        a[1][x] = ag;
        a[2][x] = ab;
        b[x] = mp[x] - ar * mi[0][x] - ag * mi[1][x] - ab * mi[2][x];
    }
    (a, b)
}

/// The subject on transparency: opaque pixels keep their colour, transparent ones are cleared, and
/// edge pixels get the foreground colour blur fusion estimates for them.
pub(crate) fn cutout_with_alpha(
    rgb: &RgbImage,
    alpha: &GrayImage,
) -> Result<RgbaImage, EngineError> {
    let (w, h) = rgb.dimensions();
    let (ww, wh) = crate::encode::fit_within(w, h, WORK_SIDE.min(w.max(h)));
    let guide = shrink(rgb, ww, wh)?;
    let a_small = shrink(alpha, ww, wh)?;
    let (wu, hu) = (ww as usize, wh as usize);
    let n = wu * hu;
    let a: Vec<f32> = a_small
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    let colour: [Vec<f32>; 3] = std::array::from_fn(|c| {
        guide
            .as_raw()
            .chunks_exact(3)
            .map(|px| f32::from(px[c]))
            .collect()
    });
    // Two passes as the paper does: a wide one that finds the colours at all, a narrow one that
    // makes them local. Each returns the blurred foreground and background colour estimates.
    let wide = (ww.max(wh) / 12).max(4) as usize;
    let narrow = (ww.max(wh) / 170).max(2) as usize;
    let (f1, b1) = blur_fusion(&colour, &colour, &colour, &a, wu, hu, wide);
    let f1_corrected: [Vec<f32>; 3] = std::array::from_fn(|c| {
        (0..n)
            .map(|i| {
                let t = a[i];
                (f1[c][i] + t * (colour[c][i] - t * f1[c][i] - (1.0 - t) * b1[c][i]))
                    .clamp(0.0, 255.0)
            })
            .collect()
    });
    let (fg, bg) = blur_fusion(&colour, &f1_corrected, &b1, &a, wu, hu, narrow);
    // Only edge pixels (0 < alpha < 255) use the estimates, so they are sampled at those pixels
    // alone instead of bringing six planes to full resolution.
    let axes = Axes::new(ww, wh, w, h);
    let mut out = vec![0u8; w as usize * h as usize * 4];
    let wf = w as usize;
    for (y, ((dst, src), line_alpha)) in out
        .chunks_exact_mut(wf * 4)
        .zip(rgb.as_raw().chunks_exact(wf * 3))
        .zip(alpha.as_raw().chunks_exact(wf))
        .enumerate()
    {
        for (x, ((o, px), &av)) in dst
            .chunks_exact_mut(4)
            .zip(src.chunks_exact(3))
            .zip(line_alpha)
            .enumerate()
        {
            match av {
                0 => {}
                255 => o.copy_from_slice(&[px[0], px[1], px[2], 255]),
                _ => {
                    let t = f32::from(av) / 255.0;
                    for c in 0..3 {
                        let (f, b) = (axes.sample(&fg[c], x, y), axes.sample(&bg[c], x, y));
                        // What the composite equation leaves unexplained goes to the foreground.
                        let f = f + t * (f32::from(px[c]) - t * f - (1.0 - t) * b);
                        o[c] = f.clamp(0.0, 255.0).round() as u8;
                    }
                    o[3] = av;
                }
            }
        }
    }
    RgbaImage::from_raw(w, h, out)
        .ok_or_else(|| EngineError::Encode("internal: cut-out size mismatch".into()))
}

/// One blur-fusion pass: alpha-weighted local means of the foreground colours `f` and
/// (1 − alpha)-weighted ones of the background colours `b`, with radius `r`.
fn blur_fusion(
    colour: &[Vec<f32>; 3],
    f: &[Vec<f32>; 3],
    b: &[Vec<f32>; 3],
    a: &[f32],
    w: usize,
    h: usize,
    r: usize,
) -> ([Vec<f32>; 3], [Vec<f32>; 3]) {
    let n = a.len();
    let wf = box_mean(a, w, h, r);
    let wb: Vec<f32> = wf.iter().map(|v| 1.0 - v).collect();
    let mean = |plane: &[f32], weight: &dyn Fn(usize) -> f32, norm: &[f32], c: usize| -> Vec<f32> {
        let weighted: Vec<f32> = (0..n).map(|i| plane[i] * weight(i)).collect();
        box_mean(&weighted, w, h, r)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if norm[i] > 1e-4 {
                    s / norm[i]
                } else {
                    colour[c][i]
                }
            })
            .collect()
    };
    let fg = std::array::from_fn(|c| mean(&f[c], &|i| a[i], &wf, c));
    let bg = std::array::from_fn(|c| mean(&b[c], &|i| 1.0 - a[i], &wb, c));
    (fg, bg)
}

/// Mean over the (2r+1)² window of a `w`×`h` plane, edges replicated.
pub(crate) fn box_mean(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    if r == 0 || w == 0 || h == 0 {
        return src.to_vec();
    }
    let win = (2 * r + 1) as f32;
    let mut tmp = vec![0f32; src.len()];
    let col = |i: isize| i.clamp(0, w as isize - 1) as usize;
    // Each row's running sum is a chain of dependent additions; running eight rows side by side
    // lets the processor overlap them (every row's arithmetic is the same as alone).
    const LANES: usize = 8;
    let blocks = h / LANES;
    for block in 0..blocks {
        let base = block * LANES * w;
        let mut sums = [0f32; LANES];
        for (l, sum) in sums.iter_mut().enumerate() {
            let line = &src[base + l * w..base + (l + 1) * w];
            *sum = (-(r as isize)..=r as isize).map(|i| line[col(i)]).sum();
        }
        for x in 0..w {
            let xi = x as isize;
            let (add, sub) = (col(xi + r as isize + 1), col(xi - r as isize));
            for (l, sum) in sums.iter_mut().enumerate() {
                let row = base + l * w;
                tmp[row + x] = *sum / win;
                *sum += src[row + add] - src[row + sub];
            }
        }
    }
    for y in blocks * LANES..h {
        let line = &src[y * w..(y + 1) * w];
        let at = |i: isize| line[col(i)];
        let mut sum: f32 = (-(r as isize)..=r as isize).map(at).sum();
        for x in 0..w {
            tmp[y * w + x] = sum / win;
            let xi = x as isize;
            sum += at(xi + r as isize + 1) - at(xi - r as isize);
        }
    }
    let mut out = vec![0f32; src.len()];
    let row = |y: isize| y.clamp(0, h as isize - 1) as usize * w;
    let mut sums = vec![0f32; w];
    for y in -(r as isize)..=r as isize {
        let base = row(y);
        for (s, v) in sums.iter_mut().zip(&tmp[base..base + w]) {
            *s += v;
        }
    }
    for y in 0..h {
        for (o, s) in out[y * w..(y + 1) * w].iter_mut().zip(&sums) {
            *o = s / win;
        }
        let (add, sub) = (
            row(y as isize + r as isize + 1),
            row(y as isize - r as isize),
        );
        for x in 0..w {
            sums[x] += tmp[add + x] - tmp[sub + x];
        }
    }
    out
}

/// Bilinear resize of a plane, sampling at pixel centres (as image libraries do).
pub(crate) fn bilinear(src: &[f32], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<f32> {
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let axes = Axes::new(sw, sh, dw, dh);
    let mut rows = Rows::new(src, &axes);
    let mut out = Vec::with_capacity(dw as usize * dh as usize);
    for y in 0..dh as usize {
        out.extend_from_slice(rows.row(&axes, y));
    }
    out
}

/// Where each output column and row of a bilinear resize samples the source: the two source
/// indices and the weight of the second.
struct Axes {
    xs: Vec<(usize, usize, f32)>,
    ys: Vec<(usize, usize, f32)>,
    /// Source width.
    sw: usize,
    /// Source height.
    sh: usize,
    /// Source and output have the same size: every sample is the source pixel itself.
    same: bool,
}

impl Axes {
    fn new(sw: u32, sh: u32, dw: u32, dh: u32) -> Self {
        let axis = |d: u32, s: u32| -> Vec<(usize, usize, f32)> {
            let ratio = s as f32 / d as f32;
            (0..d)
                .map(|i| {
                    let pos = ((i as f32 + 0.5) * ratio - 0.5).clamp(0.0, (s - 1) as f32);
                    let lo = pos.floor() as usize;
                    let hi = (lo + 1).min(s as usize - 1);
                    (lo, hi, pos - lo as f32)
                })
                .collect()
        };
        Axes {
            xs: axis(dw, sw),
            ys: axis(dh, sh),
            sw: sw as usize,
            sh: sh as usize,
            same: (sw, sh) == (dw, dh),
        }
    }

    /// The resized plane's value at (`x`, `y`), computed as [`Rows`] computes it.
    fn sample(&self, src: &[f32], x: usize, y: usize) -> f32 {
        if self.same {
            return src[y * self.sw + x];
        }
        let (xl, xh, tx) = self.xs[x];
        let (yl, yh, ty) = self.ys[y];
        let at = |row: usize| {
            let line = &src[row.min(self.sh - 1) * self.sw..];
            line[xl] + (line[xh] - line[xl]) * tx
        };
        let (lo, hi) = (at(yl), at(yh));
        lo + (hi - lo) * ty
    }
}

/// A plane resized by [`Axes`] one output row at a time (the two source rows it blends are kept
/// until the next output row needs others).
struct Rows<'a> {
    src: &'a [f32],
    lo: Vec<f32>,
    hi: Vec<f32>,
    cached: (usize, usize),
    out: Vec<f32>,
}

impl<'a> Rows<'a> {
    fn new(src: &'a [f32], axes: &Axes) -> Self {
        let dw = axes.xs.len();
        let width = if axes.same { 0 } else { dw };
        Rows {
            src,
            lo: vec![0.0; width],
            hi: vec![0.0; width],
            cached: (usize::MAX, usize::MAX),
            out: vec![0.0; width],
        }
    }

    /// Output row `y`.
    fn row(&mut self, axes: &Axes, y: usize) -> &[f32] {
        let sw = axes.sw;
        if axes.same {
            return &self.src[y * sw..(y + 1) * sw];
        }
        let (lo, hi, t) = axes.ys[y];
        if self.cached != (lo, hi) {
            let fill = |row: &mut [f32], y: usize| {
                let line = &self.src[y * sw..(y + 1) * sw];
                for (o, &(lo, hi, t)) in row.iter_mut().zip(&axes.xs) {
                    *o = line[lo] + (line[hi] - line[lo]) * t;
                }
            };
            fill(&mut self.lo, lo.min(axes.sh - 1));
            fill(&mut self.hi, hi.min(axes.sh - 1));
            self.cached = (lo, hi);
        }
        for ((o, a), b) in self.out.iter_mut().zip(&self.lo).zip(&self.hi) {
            *o = a + (b - a) * t;
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A photo split at column `edge`: red subject on the left, blue background on the right.
    fn split_photo(w: u32, h: u32, edge: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if x < edge {
                Rgb([220, 30, 30])
            } else {
                Rgb([30, 40, 200])
            }
        })
    }

    /// What a 320² model sees of that photo: the fraction of each mask pixel that is subject.
    fn model_mask(w: u32, h: u32, edge: u32, side: u32) -> SegmentationMask {
        let values = (0..side * side)
            .map(|i| {
                let x = i % side;
                let (x0, x1) = (
                    x as f32 * w as f32 / side as f32,
                    (x + 1) as f32 * w as f32 / side as f32,
                );
                ((edge as f32 - x0) / (x1 - x0)).clamp(0.0, 1.0)
            })
            .collect();
        let _ = h;
        SegmentationMask::new(side, side, values).expect("mask")
    }

    #[test]
    fn the_refined_edge_follows_the_photo_not_the_upscale() {
        let (w, h, edge) = (1601u32, 1201u32, 803u32);
        let photo = split_photo(w, h, edge);
        let mask = model_mask(w, h, edge, 320);
        // A plain bilinear upscale leaves a ramp several pixels wide around the edge.
        let upscaled = bilinear(&mask.values, 320, 320, w, h);
        let row = 600 * w as usize;
        let plain = |x: u32| upscaled[row + x as usize];
        assert!(
            plain(edge - 2) < 0.9 && plain(edge + 1) > 0.1,
            "the fixture's upscale is soft"
        );
        let alpha = refine(&mask, &photo).expect("refine");
        let at = |x: u32| alpha.get_pixel(x, 600).0[0];
        for x in [0, edge - 200, edge - 3, edge - 2, edge - 1] {
            assert!(at(x) >= 240, "x = {x}: alpha {}", at(x));
        }
        for x in [edge, edge + 1, edge + 2, edge + 200, w - 1] {
            assert!(at(x) <= 15, "x = {x}: alpha {}", at(x));
        }
    }

    #[test]
    fn a_photo_smaller_than_the_mask_keeps_the_masks_thin_structures() {
        // A lattice tower at night: bars 6 mask pixels wide every 40, on a 1024² mask; the photo
        // is 400x300, so each bar is about 2.3 photo pixels wide, barely darker than the sky.
        let (w, h) = (400u32, 300u32);
        let side = 1024u32;
        let bar = |x: f32| x.rem_euclid(40.0) < 6.0;
        let values = (0..side * side)
            .map(|i| if bar((i % side) as f32) { 1.0 } else { 0.0 })
            .collect();
        let mask = SegmentationMask::new(side, side, values).expect("mask");
        let photo = RgbImage::from_fn(w, h, |x, _| {
            let centre = (x as f32 + 0.5) * side as f32 / w as f32;
            if bar(centre) {
                Rgb([40, 42, 50])
            } else {
                Rgb([48, 50, 60])
            }
        });
        let alpha = refine(&mask, &photo).expect("refine");
        for k in 0..10u32 {
            // The bar's centre (mask x = 40k + 3) in photo pixels, and halfway to the next bar.
            let centre = ((40 * k + 3) as f32 * w as f32 / side as f32) as u32;
            let gap = ((40 * k + 23) as f32 * w as f32 / side as f32) as u32;
            for y in [0, 150, 299] {
                let (on, off) = (
                    alpha.get_pixel(centre, y).0[0],
                    alpha.get_pixel(gap, y).0[0],
                );
                assert!(on >= 200, "bar {k} at x = {centre}, y = {y}: alpha {on}");
                assert!(
                    off <= 20,
                    "gap after bar {k} at x = {gap}, y = {y}: alpha {off}"
                );
            }
        }
    }

    #[test]
    fn the_cutout_has_no_halo_of_the_old_background() {
        let (w, h, edge) = (400u32, 300u32, 200u32);
        let photo = RgbImage::from_fn(w, h, |x, _| {
            // A soft edge: the subject (pure red) blends into the backdrop (white) over 6 px.
            let t = ((edge as f32 + 3.0 - x as f32) / 6.0).clamp(0.0, 1.0);
            let mix = |f: f32, b: f32| (f * t + b * (1.0 - t)).round() as u8;
            Rgb([mix(230.0, 255.0), mix(20.0, 255.0), mix(20.0, 255.0)])
        });
        let alpha = GrayImage::from_fn(w, h, |x, _| {
            let t = ((edge as f32 + 3.0 - x as f32) / 6.0).clamp(0.0, 1.0);
            image::Luma([(t * 255.0).round() as u8])
        });
        let cut = cutout_with_alpha(&photo, &alpha).expect("cutout");
        for x in edge - 2..edge + 3 {
            let p = cut.get_pixel(x, 150).0;
            assert!(p[3] > 0 && p[3] < 255);
            // The edge pixel's own colour is pink (red mixed with white); the cut-out's is red.
            assert!(
                p[1] < 80 && p[2] < 80,
                "x = {x}: {p:?} still carries the white backdrop"
            );
        }
        assert_eq!(cut.get_pixel(10, 10).0, [230, 20, 20, 255]);
        assert_eq!(cut.get_pixel(390, 10).0[3], 0);
    }

    #[test]
    fn masks_are_checked_and_confidence_reads_the_model() {
        assert!(SegmentationMask::new(2, 2, vec![0.0; 3]).is_err());
        assert!(SegmentationMask::new(1, 1, vec![f32::NAN]).is_err());
        let sure = SegmentationMask::new(4, 1, vec![0.0, 0.0, 1.0, 1.0]).expect("mask");
        assert!(sure.confidence() > 0.99);
        let unsure = SegmentationMask::new(4, 1, vec![0.5, 0.45, 0.55, 0.5]).expect("mask");
        assert!(unsure.confidence() < 0.1);
        let empty = SegmentationMask::new(4, 1, vec![0.0; 4]).expect("mask");
        assert!(
            empty.confidence() < 0.2,
            "no subject found is not a confident answer"
        );
    }

    #[test]
    fn rows_and_samples_are_the_bilinear_resize_value_for_value() {
        let (sw, sh) = (37u32, 23u32);
        let src: Vec<f32> = (0..sw * sh)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect();
        for (dw, dh) in [(37, 23), (100, 61), (20, 50), (5, 3)] {
            let full = bilinear(&src, sw, sh, dw, dh);
            let axes = Axes::new(sw, sh, dw, dh);
            let mut rows = Rows::new(&src, &axes);
            for y in 0..dh as usize {
                let row = rows.row(&axes, y).to_vec();
                assert_eq!(row.len(), dw as usize, "{dw}x{dh}");
                for x in 0..dw as usize {
                    let want = full[y * dw as usize + x];
                    assert_eq!(row[x].to_bits(), want.to_bits(), "row {dw}x{dh} ({x},{y})");
                    let s = axes.sample(&src, x, y);
                    assert_eq!(s.to_bits(), want.to_bits(), "sample {dw}x{dh} ({x},{y})");
                }
            }
        }
    }

    /// The plain two-pass box mean, one row at a time.
    fn box_mean_row_by_row(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
        let win = (2 * r + 1) as f32;
        let mut tmp = vec![0f32; src.len()];
        for y in 0..h {
            let line = &src[y * w..(y + 1) * w];
            let at = |i: isize| line[i.clamp(0, w as isize - 1) as usize];
            let mut sum: f32 = (-(r as isize)..=r as isize).map(at).sum();
            for x in 0..w {
                tmp[y * w + x] = sum / win;
                let xi = x as isize;
                sum += at(xi + r as isize + 1) - at(xi - r as isize);
            }
        }
        let mut out = vec![0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut s = 0f32;
                for dy in -(r as isize)..=r as isize {
                    let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                    s += tmp[yy * w + x];
                }
                out[y * w + x] = s / win;
            }
        }
        out
    }

    #[test]
    fn box_mean_is_the_window_mean_for_every_row_count() {
        for (w, h, r) in [(31, 8, 3), (17, 21, 2), (5, 3, 4), (40, 17, 6)] {
            let src: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 97) as f32 / 97.0).collect();
            let got = box_mean(&src, w, h, r);
            let want = box_mean_row_by_row(&src, w, h, r);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((g - e).abs() < 1e-5, "{w}x{h} r {r} at {i}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn box_mean_and_bilinear_keep_flat_planes_flat() {
        let flat = vec![0.25f32; 30 * 20];
        assert!(box_mean(&flat, 30, 20, 4)
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-5));
        let up = bilinear(&flat, 30, 20, 97, 61);
        assert_eq!(up.len(), 97 * 61);
        assert!(up.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }
}
