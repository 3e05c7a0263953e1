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

#[cfg(not(atelier_turbojpeg))]
mod imp {
    use super::{Decoded, Error};

    pub(crate) fn decode_scaled(_: &[u8], _: u32, _: u64) -> Result<Decoded, Error> {
        Err(Error::Unavailable)
    }
}

#[cfg(atelier_turbojpeg)]
#[allow(unsafe_code)]
mod imp {
    use std::ffi::CStr;
    use std::os::raw::{c_char, c_int, c_uchar, c_ulong, c_void};

    use super::{Decoded, Error};

    type TjHandle = *mut c_void;

    // turbojpeg.h (libjpeg-turbo 2.x). pkg-config emits the link flags from build.rs.
    extern "C" {
        fn tjInitDecompress() -> TjHandle;
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
    const TJPF_GRAY: c_int = 6;
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
            let h = unsafe { tjInitDecompress() };
            if h.is_null() {
                return Err(Error::Failed("cannot create a decompressor".into()));
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
            // SAFETY: the handle came from tjInitDecompress and is destroyed exactly once.
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
