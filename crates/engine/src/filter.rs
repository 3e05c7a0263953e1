//! Small separable filters on interleaved 8-bit buffers: box blur and binary morphology.

/// Box blur of radius `r` over every channel of an interleaved `w`×`h` buffer, edges replicated.
pub(crate) fn box_blur(src: &[u8], w: usize, h: usize, channels: usize, r: usize) -> Vec<u8> {
    if r == 0 || w == 0 || h == 0 {
        return src.to_vec();
    }
    let mut tmp = vec![0u8; src.len()];
    let mut out = vec![0u8; src.len()];
    // Rows.
    for y in 0..h {
        let span = y * w * channels..(y + 1) * w * channels;
        blur_line(&src[span.clone()], &mut tmp[span], channels, r);
    }
    // Columns: one running sum per (x, channel), walking down the rows so memory is read in order.
    let stride = w * channels;
    let win = (2 * r + 1) as u32;
    let row = |y: isize| -> &[u8] {
        let y = y.clamp(0, h as isize - 1) as usize;
        &tmp[y * stride..(y + 1) * stride]
    };
    let mut sums = vec![0u32; stride];
    for y in -(r as isize)..=r as isize {
        for (s, &v) in sums.iter_mut().zip(row(y)) {
            *s += u32::from(v);
        }
    }
    for y in 0..h {
        for (o, &s) in out[y * stride..(y + 1) * stride].iter_mut().zip(&sums) {
            *o = ((s + win / 2) / win) as u8;
        }
        let (add, sub) = (
            row(y as isize + r as isize + 1),
            row(y as isize - r as isize),
        );
        for ((s, &a), &b) in sums.iter_mut().zip(add).zip(sub) {
            *s = *s + u32::from(a) - u32::from(b);
        }
    }
    out
}

/// One line of interleaved pixels, running-sum box filter per channel.
fn blur_line(src: &[u8], dst: &mut [u8], channels: usize, r: usize) {
    let n = src.len() / channels;
    let win = (2 * r + 1) as u32;
    let at = |i: isize, c: usize| -> u32 {
        let i = i.clamp(0, n as isize - 1) as usize;
        u32::from(src[i * channels + c])
    };
    for c in 0..channels {
        let mut sum: u32 = (-(r as isize)..=r as isize).map(|i| at(i, c)).sum();
        for i in 0..n {
            dst[i * channels + c] = ((sum + win / 2) / win) as u8;
            let i = i as isize;
            sum = sum + at(i + r as isize + 1, c) - at(i - r as isize, c);
        }
    }
}

/// For a 0/1 mask, how many set pixels lie in the (2r+1)² square around each pixel (outside is 0).
fn square_count(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u16> {
    let mut rows = vec![0u16; mask.len()];
    for y in 0..h {
        let line = &mask[y * w..(y + 1) * w];
        let mut sum: u16 = line.iter().take(r + 1).map(|&v| u16::from(v)).sum();
        for x in 0..w {
            rows[y * w + x] = sum;
            if x + r + 1 < w {
                sum += u16::from(line[x + r + 1]);
            }
            if x >= r {
                sum -= u16::from(line[x - r]);
            }
        }
    }
    let mut out = vec![0u16; mask.len()];
    for x in 0..w {
        let mut sum: u16 = (0..h.min(r + 1)).map(|y| rows[y * w + x]).sum();
        for y in 0..h {
            out[y * w + x] = sum;
            if y + r + 1 < h {
                sum += rows[(y + r + 1) * w + x];
            }
            if y >= r {
                sum -= rows[(y - r) * w + x];
            }
        }
    }
    out
}

/// Binary dilation by a (2r+1)² square.
pub(crate) fn dilate(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    square_count(mask, w, h, r)
        .iter()
        .map(|&c| u8::from(c > 0))
        .collect()
}

/// Binary erosion by a (2r+1)² square (pixels near the image edge erode).
pub(crate) fn erode(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    let full = ((2 * r + 1) * (2 * r + 1)) as u16;
    square_count(mask, w, h, r)
        .iter()
        .map(|&c| u8::from(c == full))
        .collect()
}

/// Grows regions over the 4-neighbours of a `w`×`h` grid: each index popped from `stack` offers its
/// neighbours to `admit(from, to)`, which decides (and records) whether `to` joins; joined indices
/// are grown from in turn. The one flood fill of the engine (connected components, shadow growth).
pub(crate) fn flood(
    w: usize,
    h: usize,
    stack: &mut Vec<usize>,
    mut admit: impl FnMut(usize, usize) -> bool,
) {
    while let Some(i) = stack.pop() {
        let (x, y) = (i % w, i / w);
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ];
        for j in neighbours.into_iter().flatten() {
            if admit(i, j) {
                stack.push(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_flat_areas_and_spreads_a_spike() {
        let (w, h) = (9, 7);
        let mut buf = vec![100u8; w * h];
        assert_eq!(box_blur(&buf, w, h, 1, 2), buf);
        let mut spike = vec![0u8; w * h];
        spike[3 * w + 4] = 225;
        let out = box_blur(&spike, w, h, 1, 1);
        assert_eq!(out[3 * w + 4], 25);
        assert_eq!(out[2 * w + 3], 25);
        assert_eq!(out[w + 4], 0);
        buf[0] = 0;
        assert!(box_blur(&buf, w, h, 1, 1)[0] < 100);
    }

    #[test]
    fn morphology_grows_and_shrinks_a_square() {
        let (w, h) = (11, 11);
        let mut m = vec![0u8; w * h];
        for y in 3..8 {
            for x in 3..8 {
                m[y * w + x] = 1;
            }
        }
        let count = |v: &[u8]| v.iter().filter(|&&b| b == 1).count();
        assert_eq!(count(&dilate(&m, w, h, 1)), 49);
        assert_eq!(count(&erode(&m, w, h, 1)), 9);
        assert_eq!(count(&erode(&m, w, h, 0)), 25);
    }
}
