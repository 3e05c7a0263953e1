//! DCT-scaled JPEG decoding (1/1, 1/2, 1/4, 1/8) through the system libjpeg-turbo's TurboJPEG 2.x
//! API (Debian bookworm ships 2.1; the `turbojpeg` crate on crates.io needs 3.x and builds C with
//! cmake, which this project does not do).
//!
//! Safe surface, small unsafe core: every call goes through one handle owned by a guard that
//! destroys it, the destination buffer is allocated here at the size the call may write, and all
//! errors (including libjpeg's warnings, which are made fatal) come back as `Err`.
//! When the library was not found at build time, [`available`] is false and every decode answers
//! [`Error::Unavailable`].

use std::fmt;

/// Pixels decoded by libjpeg-turbo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Width in pixels of the scaled image.
    pub width: u32,
    /// Height in pixels of the scaled image.
    pub height: u32,
    /// 3 for RGB, 1 for grayscale.
    pub channels: u8,
    /// Row-major, unpadded pixels.
    pub pixels: Vec<u8>,
}

/// A 4:2:0 JPEG decoded to its Y, Cb and Cr planes (no colour conversion, no chroma upsampling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planes420 {
    /// Width in pixels of the (scaled) image, which is the Y plane's width.
    pub width: u32,
    /// Height in pixels of the (scaled) image.
    pub height: u32,
    /// Width of the Cb and Cr planes (half the image width, rounded up).
    pub chroma_width: u32,
    /// Height of the Cb and Cr planes.
    pub chroma_height: u32,
    /// Luma, `width`×`height`, unpadded.
    pub y: Vec<u8>,
    /// Blue-difference chroma, `chroma_width`×`chroma_height`.
    pub cb: Vec<u8>,
    /// Red-difference chroma, `chroma_width`×`chroma_height`.
    pub cr: Vec<u8>,
}

/// Why a decode did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The crate was built without libjpeg-turbo.
    Unavailable,
    /// A JPEG this path does not handle (CMYK/YCCK, a bad scale, too many pixels): use another decoder.
    Unsupported(String),
    /// libjpeg-turbo refused the data (corrupt, truncated, or a warning made fatal).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable => f.write_str("libjpeg-turbo was not linked into this build"),
            Error::Unsupported(m) => write!(f, "not handled by libjpeg-turbo here: {m}"),
            Error::Failed(m) => write!(f, "libjpeg-turbo: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// True when this build links libjpeg-turbo.
pub fn available() -> bool {
    cfg!(atelier_turbojpeg)
}

/// Reads the header, refuses more than `max_pixels` (as libjpeg-turbo sees the frame) and CMYK or
/// YCCK data, then decodes at 1/`denom` scale (1, 2, 4 or 8; sides rounded up) to RGB, or to one
/// grey channel for grayscale JPEGs.
pub fn decode_scaled(jpeg: &[u8], denom: u32, max_pixels: u64) -> Result<Decoded, Error> {
    if !matches!(denom, 1 | 2 | 4 | 8) {
        return Err(Error::Unsupported(format!("scale 1/{denom}")));
    }
    imp::decode_scaled(jpeg, denom, max_pixels)
}

/// Baseline JPEG with 4:2:0 chroma subsampling from unpadded 8-bit RGB, at `quality` 1..=100.
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, Error> {
    let expected = u64::from(width) * u64::from(height) * 3;
    if width == 0 || height == 0 || rgb.len() as u64 != expected {
        return Err(Error::Unsupported(format!(
            "{} bytes are not a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    imp::encode_rgb(rgb, width, height, quality.clamp(1, 100))
}

/// Decodes a YCbCr JPEG stored with 4:2:0 subsampling to its planes at 1/`denom` scale (sides
/// rounded up); anything else (other subsampling, grey, CMYK) is `Unsupported`.
pub fn decode_scaled_420(jpeg: &[u8], denom: u32, max_pixels: u64) -> Result<Planes420, Error> {
    if !matches!(denom, 1 | 2 | 4 | 8) {
        return Err(Error::Unsupported(format!("scale 1/{denom}")));
    }
    imp::decode_scaled_420(jpeg, denom, max_pixels)
}

/// Baseline 4:2:0 JPEG straight from Y, Cb and Cr planes laid out as [`Planes420`] describes.
pub fn encode_420(planes: &Planes420, quality: u8) -> Result<Vec<u8>, Error> {
    let (w, h) = (u64::from(planes.width), u64::from(planes.height));
    let (cw, ch) = (
        u64::from(planes.chroma_width),
        u64::from(planes.chroma_height),
    );
    if w == 0
        || h == 0
        || cw != w.div_ceil(2)
        || ch != h.div_ceil(2)
        || planes.y.len() as u64 != w * h
        || planes.cb.len() as u64 != cw * ch
        || planes.cr.len() as u64 != cw * ch
    {
        return Err(Error::Unsupported(
            "the planes do not match their sizes".into(),
        ));
    }
    imp::encode_420(planes, quality.clamp(1, 100))
}

#[cfg(not(atelier_turbojpeg))]
mod imp {
    use super::{Decoded, Error, Planes420};

    pub(crate) fn decode_scaled_420(_: &[u8], _: u32, _: u64) -> Result<Planes420, Error> {
        Err(Error::Unavailable)
    }

    pub(crate) fn encode_420(_: &Planes420, _: u8) -> Result<Vec<u8>, Error> {
        Err(Error::Unavailable)
    }

    pub(crate) fn decode_scaled(_: &[u8], _: u32, _: u64) -> Result<Decoded, Error> {
        Err(Error::Unavailable)
    }

    pub(crate) fn encode_rgb(_: &[u8], _: u32, _: u32, _: u8) -> Result<Vec<u8>, Error> {
        Err(Error::Unavailable)
    }
}

#[cfg(atelier_turbojpeg)]
#[allow(unsafe_code)]
mod imp {
    use std::ffi::CStr;
    use std::os::raw::{c_char, c_int, c_uchar, c_ulong, c_void};

    use super::{Decoded, Error, Planes420};

    type TjHandle = *mut c_void;

    // turbojpeg.h (libjpeg-turbo 2.x). pkg-config emits the link flags from build.rs.
    extern "C" {
        fn tjInitCompress() -> TjHandle;
        fn tjBufSize(width: c_int, height: c_int, jpeg_subsamp: c_int) -> c_ulong;
        fn tjCompress2(
            handle: TjHandle,
            src_buf: *const c_uchar,
            width: c_int,
            pitch: c_int,
            height: c_int,
            pixel_format: c_int,
            jpeg_buf: *mut *mut c_uchar,
            jpeg_size: *mut c_ulong,
            jpeg_subsamp: c_int,
            jpeg_qual: c_int,
            flags: c_int,
        ) -> c_int;
        fn tjInitDecompress() -> TjHandle;
        fn tjPlaneWidth(component_id: c_int, width: c_int, subsamp: c_int) -> c_int;
        fn tjPlaneHeight(component_id: c_int, height: c_int, subsamp: c_int) -> c_int;
        fn tjDecompressToYUVPlanes(
            handle: TjHandle,
            jpeg_buf: *const c_uchar,
            jpeg_size: c_ulong,
            dst_planes: *mut *mut c_uchar,
            width: c_int,
            strides: *mut c_int,
            height: c_int,
            flags: c_int,
        ) -> c_int;
        fn tjCompressFromYUVPlanes(
            handle: TjHandle,
            src_planes: *const *const c_uchar,
            width: c_int,
            strides: *const c_int,
            height: c_int,
            subsamp: c_int,
            jpeg_buf: *mut *mut c_uchar,
            jpeg_size: *mut c_ulong,
            jpeg_qual: c_int,
            flags: c_int,
        ) -> c_int;
        fn tjDecompressHeader3(
            handle: TjHandle,
            jpeg_buf: *const c_uchar,
            jpeg_size: c_ulong,
            width: *mut c_int,
            height: *mut c_int,
            jpeg_subsamp: *mut c_int,
            jpeg_colorspace: *mut c_int,
        ) -> c_int;
        fn tjDecompress2(
            handle: TjHandle,
            jpeg_buf: *const c_uchar,
            jpeg_size: c_ulong,
            dst_buf: *mut c_uchar,
            width: c_int,
            pitch: c_int,
            height: c_int,
            pixel_format: c_int,
            flags: c_int,
        ) -> c_int;
        fn tjDestroy(handle: TjHandle) -> c_int;
        fn tjGetErrorStr2(handle: TjHandle) -> *mut c_char;
    }

    const TJPF_RGB: c_int = 0;
    const TJSAMP_420: c_int = 2;
    /// Write into the buffer we allocated (sized by tjBufSize) instead of one TurboJPEG allocates.
    const TJFLAG_NOREALLOC: c_int = 1024;
    const TJPF_GRAY: c_int = 6;
    const TJCS_YCBCR: c_int = 1;
    const TJCS_GRAY: c_int = 2;
    const TJCS_CMYK: c_int = 3;
    const TJCS_YCCK: c_int = 4;
    /// Corrupt data is an error, not a grey patch.
    const TJFLAG_STOPONWARNING: c_int = 8192;
    /// Refuses progressive files with an absurd number of scans (a known CPU-exhaustion trick).
    const TJFLAG_LIMITSCANS: c_int = 32768;

    /// Owns a decompressor handle; destroys it on every path.
    struct Handle(TjHandle);

    impl Handle {
        fn new() -> Result<Handle, Error> {
            // SAFETY: no arguments; returns NULL on failure, which is checked.
            Handle::checked(unsafe { tjInitDecompress() })
        }

        fn compressor() -> Result<Handle, Error> {
            // SAFETY: no arguments; returns NULL on failure, which is checked.
            Handle::checked(unsafe { tjInitCompress() })
        }

        fn checked(h: TjHandle) -> Result<Handle, Error> {
            if h.is_null() {
                return Err(Error::Failed("cannot create a TurboJPEG handle".into()));
            }
            Ok(Handle(h))
        }

        fn error(&self) -> Error {
            // SAFETY: the handle is live; the returned string is NUL-terminated and owned by the
            // handle (or static), and it is copied before the handle can be destroyed.
            let msg = unsafe {
                let p = tjGetErrorStr2(self.0);
                if p.is_null() {
                    "unknown error".to_string()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            Error::Failed(msg)
        }
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: the handle came from tjInit* and is destroyed exactly once.
            unsafe {
                tjDestroy(self.0);
            }
        }
    }

    pub(crate) fn decode_scaled(
        jpeg: &[u8],
        denom: u32,
        max_pixels: u64,
    ) -> Result<Decoded, Error> {
        let size = c_ulong::try_from(jpeg.len())
            .map_err(|_| Error::Unsupported("the file is too large".into()))?;
        let handle = Handle::new()?;
        let (mut w, mut h, mut subsamp, mut colorspace) = (0, 0, 0, 0);
        // SAFETY: `jpeg` is valid for `size` bytes; the out-pointers are live locals.
        let rc = unsafe {
            tjDecompressHeader3(
                handle.0,
                jpeg.as_ptr(),
                size,
                &mut w,
                &mut h,
                &mut subsamp,
                &mut colorspace,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(Error::Failed(format!("bad frame size {w}x{h}")));
        };
        if width == 0 || height == 0 || u64::from(width) * u64::from(height) > max_pixels {
            return Err(Error::Unsupported(format!(
                "frame {width}x{height} is empty or over {max_pixels} pixels"
            )));
        }
        if matches!(colorspace, TJCS_CMYK | TJCS_YCCK) {
            return Err(Error::Unsupported("CMYK or YCCK colour".into()));
        }
        let (channels, pixel_format) = if colorspace == TJCS_GRAY {
            (1u8, TJPF_GRAY)
        } else {
            (3u8, TJPF_RGB)
        };
        let sw = width.div_ceil(denom);
        let sh = height.div_ceil(denom);
        let pitch = sw as usize * usize::from(channels);
        let len = pitch
            .checked_mul(sh as usize)
            .ok_or_else(|| Error::Unsupported("output too large".into()))?;
        let mut pixels = vec![0u8; len];
        let to_int = |v: usize| {
            c_int::try_from(v).map_err(|_| Error::Unsupported("output too large".into()))
        };
        let (cw, ch, cpitch) = (to_int(sw as usize)?, to_int(sh as usize)?, to_int(pitch)?);
        // SAFETY: `pixels` holds `pitch * sh` bytes; TurboJPEG picks the largest scaling factor whose
        // output fits within `sw`×`sh` and writes rows of at most `pitch` bytes, so it stays inside.
        let rc = unsafe {
            tjDecompress2(
                handle.0,
                jpeg.as_ptr(),
                size,
                pixels.as_mut_ptr(),
                cw,
                cpitch,
                ch,
                pixel_format,
                TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        Ok(Decoded {
            width: sw,
            height: sh,
            channels,
            pixels,
        })
    }

    pub(crate) fn encode_rgb(
        rgb: &[u8],
        width: u32,
        height: u32,
        quality: u8,
    ) -> Result<Vec<u8>, Error> {
        let too_big = || Error::Unsupported("image too large".into());
        let w = c_int::try_from(width).map_err(|_| too_big())?;
        let h = c_int::try_from(height).map_err(|_| too_big())?;
        let pitch = c_int::try_from(width as usize * 3).map_err(|_| too_big())?;
        let handle = Handle::compressor()?;
        // SAFETY: plain arithmetic on its arguments.
        let capacity = unsafe { tjBufSize(w, h, TJSAMP_420) };
        let cap = usize::try_from(capacity).map_err(|_| too_big())?;
        if cap == 0 || capacity == c_ulong::MAX {
            return Err(too_big());
        }
        let mut out = vec![0u8; cap];
        let mut dst = out.as_mut_ptr();
        let mut size = capacity;
        // SAFETY: `rgb` holds width×height×3 bytes (checked by the caller); `out` holds tjBufSize
        // bytes, the worst case for these dimensions, and NOREALLOC keeps TurboJPEG inside it.
        let rc = unsafe {
            tjCompress2(
                handle.0,
                rgb.as_ptr(),
                w,
                pitch,
                h,
                TJPF_RGB,
                &mut dst,
                &mut size,
                TJSAMP_420,
                c_int::from(quality),
                TJFLAG_NOREALLOC,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        let len = usize::try_from(size).map_err(|_| too_big())?;
        if dst != out.as_mut_ptr() || len > out.len() {
            return Err(Error::Failed("the encoder wrote outside its buffer".into()));
        }
        out.truncate(len);
        Ok(out)
    }

    /// The header of a JPEG this path may decode: size within `max_pixels`, YCbCr colour.
    fn header(handle: &Handle, jpeg: &[u8], max_pixels: u64) -> Result<(u32, u32, c_int), Error> {
        let size = c_ulong::try_from(jpeg.len())
            .map_err(|_| Error::Unsupported("the file is too large".into()))?;
        let (mut w, mut h, mut subsamp, mut colorspace) = (0, 0, 0, 0);
        // SAFETY: `jpeg` is valid for `size` bytes; the out-pointers are live locals.
        let rc = unsafe {
            tjDecompressHeader3(
                handle.0,
                jpeg.as_ptr(),
                size,
                &mut w,
                &mut h,
                &mut subsamp,
                &mut colorspace,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(Error::Failed(format!("bad frame size {w}x{h}")));
        };
        if width == 0 || height == 0 || u64::from(width) * u64::from(height) > max_pixels {
            return Err(Error::Unsupported(format!(
                "frame {width}x{height} is empty or over {max_pixels} pixels"
            )));
        }
        if colorspace != TJCS_YCBCR {
            return Err(Error::Unsupported("not YCbCr".into()));
        }
        Ok((width, height, subsamp))
    }

    pub(crate) fn decode_scaled_420(
        jpeg: &[u8],
        denom: u32,
        max_pixels: u64,
    ) -> Result<Planes420, Error> {
        let handle = Handle::new()?;
        let (width, height, subsamp) = header(&handle, jpeg, max_pixels)?;
        if subsamp != TJSAMP_420 {
            return Err(Error::Unsupported("not 4:2:0".into()));
        }
        let too_big = || Error::Unsupported("output too large".into());
        let sw = c_int::try_from(width.div_ceil(denom)).map_err(|_| too_big())?;
        let sh = c_int::try_from(height.div_ceil(denom)).map_err(|_| too_big())?;
        let mut strides = [0 as c_int; 3];
        let mut sizes = [0usize; 3];
        for (id, (stride, size)) in strides.iter_mut().zip(&mut sizes).enumerate() {
            let id = id as c_int;
            // SAFETY: plain arithmetic on its arguments.
            let (pw, ph) = unsafe {
                (
                    tjPlaneWidth(id, sw, TJSAMP_420),
                    tjPlaneHeight(id, sh, TJSAMP_420),
                )
            };
            if pw <= 0 || ph <= 0 {
                return Err(too_big());
            }
            *stride = pw;
            *size = (pw as usize).checked_mul(ph as usize).ok_or_else(too_big)?;
        }
        let mut y = vec![0u8; sizes[0]];
        if strides[0] < sw {
            return Err(too_big());
        }
        let mut cb = vec![0u8; sizes[1]];
        let mut cr = vec![0u8; sizes[2]];
        let mut planes = [y.as_mut_ptr(), cb.as_mut_ptr(), cr.as_mut_ptr()];
        // SAFETY: each plane holds tjPlaneWidth × tjPlaneHeight bytes for the size asked for, with
        // that width as its stride; TurboJPEG picks a scaling factor whose output fits in it.
        let rc = unsafe {
            tjDecompressToYUVPlanes(
                handle.0,
                jpeg.as_ptr(),
                jpeg.len() as c_ulong,
                planes.as_mut_ptr(),
                sw,
                strides.as_mut_ptr(),
                sh,
                TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        // TurboJPEG pads the Y plane to even sides; keep only the image's own pixels.
        let (w, h, stride) = (sw as usize, sh as usize, strides[0] as usize);
        if stride != w || sizes[0] != w * h {
            let mut tight = Vec::with_capacity(w * h);
            for row in y.chunks_exact(stride).take(h) {
                tight.extend_from_slice(&row[..w]);
            }
            y = tight;
        }
        Ok(Planes420 {
            width: sw as u32,
            height: sh as u32,
            chroma_width: strides[1] as u32,
            chroma_height: (sizes[1] / strides[1] as usize) as u32,
            y,
            cb,
            cr,
        })
    }

    pub(crate) fn encode_420(p: &Planes420, quality: u8) -> Result<Vec<u8>, Error> {
        let too_big = || Error::Unsupported("image too large".into());
        let w = c_int::try_from(p.width).map_err(|_| too_big())?;
        let h = c_int::try_from(p.height).map_err(|_| too_big())?;
        let cw = c_int::try_from(p.chroma_width).map_err(|_| too_big())?;
        let handle = Handle::compressor()?;
        // SAFETY: plain arithmetic on its arguments.
        let capacity = unsafe { tjBufSize(w, h, TJSAMP_420) };
        let cap = usize::try_from(capacity).map_err(|_| too_big())?;
        if cap == 0 || capacity == c_ulong::MAX {
            return Err(too_big());
        }
        let mut out = vec![0u8; cap];
        let mut dst = out.as_mut_ptr();
        let mut size = capacity;
        // TurboJPEG reads the Y plane at its padded (even) size: give it one.
        let (pw, ph) = (
            p.width.next_multiple_of(2) as usize,
            p.height.next_multiple_of(2) as usize,
        );
        let (uw, uh) = (p.width as usize, p.height as usize);
        let y: std::borrow::Cow<'_, [u8]> = if (pw, ph) == (uw, uh) {
            std::borrow::Cow::Borrowed(&p.y)
        } else {
            let mut padded = Vec::with_capacity(pw * ph);
            for row in p.y.chunks_exact(uw) {
                padded.extend_from_slice(row);
                padded.resize(padded.len() + pw - uw, row[uw - 1]);
            }
            let last = padded[padded.len() - pw..].to_vec();
            while padded.len() < pw * ph {
                padded.extend_from_slice(&last);
            }
            std::borrow::Cow::Owned(padded)
        };
        for (id, (len, stride)) in [
            (y.len(), pw),
            (p.cb.len(), cw as usize),
            (p.cr.len(), cw as usize),
        ]
        .into_iter()
        .enumerate()
        {
            // SAFETY: plain arithmetic on its arguments.
            let (need_w, need_h) = unsafe {
                (
                    tjPlaneWidth(id as c_int, w, TJSAMP_420),
                    tjPlaneHeight(id as c_int, h, TJSAMP_420),
                )
            };
            if need_w <= 0
                || need_h <= 0
                || (need_w as usize) > stride
                || len < stride * need_h as usize
            {
                return Err(Error::Unsupported(
                    "the planes are smaller than TurboJPEG reads".into(),
                ));
            }
        }
        let planes = [y.as_ptr(), p.cb.as_ptr(), p.cr.as_ptr()];
        let strides = [pw as c_int, cw, cw];
        // SAFETY: the planes hold width×height and ⌈width/2⌉×⌈height/2⌉ bytes with those strides
        // (checked by the caller); `out` holds tjBufSize bytes and NOREALLOC keeps TurboJPEG in it.
        let rc = unsafe {
            tjCompressFromYUVPlanes(
                handle.0,
                planes.as_ptr(),
                w,
                strides.as_ptr(),
                h,
                TJSAMP_420,
                &mut dst,
                &mut size,
                c_int::from(quality),
                TJFLAG_NOREALLOC,
            )
        };
        if rc != 0 {
            return Err(handle.error());
        }
        let len = usize::try_from(size).map_err(|_| too_big())?;
        if dst != out.as_mut_ptr() || len > out.len() {
            return Err(Error::Failed("the encoder wrote outside its buffer".into()));
        }
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build did what `ATELIER_TURBOJPEG` asked: CI builds once with `required` and once with
    /// `off`, so neither path can be skipped without this test failing.
    #[test]
    fn the_build_links_what_it_was_asked_to() {
        match env!("ATELIER_TURBOJPEG_MODE") {
            "required" => assert!(available(), "ATELIER_TURBOJPEG=required but not linked"),
            "off" => assert!(!available(), "ATELIER_TURBOJPEG=off but linked"),
            _ => {}
        }
    }

    #[cfg(not(atelier_turbojpeg))]
    #[test]
    fn without_the_library_every_call_is_unavailable() {
        assert!(!available());
        let rgb = vec![0u8; 8 * 8 * 3];
        assert_eq!(encode_rgb(&rgb, 8, 8, 90), Err(Error::Unavailable));
        assert_eq!(
            decode_scaled(b"\xFF\xD8", 2, 1 << 20),
            Err(Error::Unavailable)
        );
        assert_eq!(
            decode_scaled_420(b"\xFF\xD8", 2, 1 << 20),
            Err(Error::Unavailable)
        );
        let planes = Planes420 {
            width: 2,
            height: 2,
            chroma_width: 1,
            chroma_height: 1,
            y: vec![0; 4],
            cb: vec![0],
            cr: vec![0],
        };
        assert_eq!(encode_420(&planes, 90), Err(Error::Unavailable));
    }

    #[cfg(atelier_turbojpeg)]
    #[test]
    fn encodes_rgb_that_decodes_back_at_any_scale() {
        assert!(available());
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % w * 4) as u8, (i / w * 5) as u8, 90])
            .collect();
        let jpeg = encode_rgb(&rgb, w, h, 90).expect("encode");
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
        let full = decode_scaled(&jpeg, 1, 1 << 20).expect("decode");
        assert_eq!((full.width, full.height, full.channels), (64, 48, 3));
        let err: u64 = full
            .pixels
            .iter()
            .zip(&rgb)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        assert!(
            err / u64::from(w * h * 3) < 4,
            "mean error {}",
            err / u64::from(w * h * 3)
        );
        let eighth = decode_scaled(&jpeg, 8, 1 << 20).expect("decode 1/8");
        assert_eq!((eighth.width, eighth.height), (8, 6));
        assert!(matches!(
            encode_rgb(&rgb, w + 1, h, 90),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn odd_scales_are_refused() {
        assert!(matches!(
            decode_scaled(b"", 3, 100),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        for junk in [
            b"".as_slice(),
            b"\xFF\xD8\xFF\xE0 not really a jpeg",
            b"\xFF\xD8\xFF\xC0\x00\x11\x08\x00\x10\x00\x10\x03",
        ] {
            assert!(decode_scaled(junk, 2, 1 << 20).is_err());
        }
    }
}
