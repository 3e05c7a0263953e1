//! Atelier's image engine: validation, `transform`, `basic_clean` and thumbnails.
//!
//! Pure and synchronous: bytes in, encoded outputs out, no I/O. Every input is probed from its header
//! (format by magic bytes, dimensions without decoding pixels) before any pixel buffer is allocated.
//!
//! Speed: JPEGs that shrink by half or more are decoded at 1/2, 1/4 or 1/8 scale (no full-resolution
//! copy is made), resized with fast_image_resize and encoded 4:2:0. The default build is pure Rust
//! (jpeg-decoder, jpeg-encoder); the optional `turbojpeg` feature uses the system libjpeg-turbo
//! (Debian `libturbojpeg0-dev`, via pkg-config) for the scaled decode and the JPEG encoder, and
//! falls back to the pure-Rust path for anything it declines or when the library is missing.
//!
//! Colour: CMYK/YCCK JPEGs become RGB and embedded RGB ICC profiles are converted to sRGB (see
//! `color`). Hostile input: a panic inside a third-party decoder becomes a 3017 for that file; the
//! `fuzz/` project at the repository root fuzzes this whole path.

mod clean;
mod color;
mod cutout;
mod decode;
mod encode;
mod error;
#[cfg(feature = "turbojpeg")]
mod fastpath;
mod filter;
mod jpeg;
mod matte;
mod probe;
mod refine;
mod resize;
mod shadow;
#[cfg(test)]
mod testutil;
mod transform;
mod webp;

pub use clean::{basic_clean, basic_clean_with, Matting, MattingReport};
pub use decode::scaled_jpeg_decoder;
pub use error::EngineError;
pub use probe::probe;
pub use refine::SegmentationMask;
pub use transform::transform;

/// An image file format the engine reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG (baseline or progressive).
    Jpeg,
    /// PNG.
    Png,
    /// WebP (read lossy or lossless; written lossy at the recipe's quality, or lossless when the
    /// recipe asks for it or its quality is 100).
    Webp,
}

impl Format {
    /// The MIME type, e.g. "image/jpeg".
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }

    /// The file extension without a dot, e.g. "jpg".
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }
}

/// Validation limits (SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width × height) an image may have; also caps resize targets.
    pub max_pixels: u64,
    /// Smallest allowed width and height in pixels.
    pub min_side: u32,
    /// When true the aspect ratio must be strictly between 1:3 and 3:1 (model kinds).
    pub model_aspect: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            min_side: 15,
            model_aspect: false,
        }
    }
}

/// What `probe` learned from a file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// The format found by magic bytes.
    pub format: Format,
    /// Width in pixels as stored (before any EXIF orientation).
    pub width: u32,
    /// Height in pixels as stored (before any EXIF orientation).
    pub height: u32,
}

/// How a resize fits the source into the requested box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fit {
    /// Fit inside the box keeping the aspect ratio; may upscale.
    #[default]
    Contain,
    /// Cover the box keeping the aspect ratio, cropping the overflow centred.
    Cover,
    /// Stretch to exactly the box.
    Fill,
    /// Like contain, but never upscales.
    Inside,
}

/// A resize request; a side of 0 is derived from the other side and the aspect ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    /// Target width in pixels, or 0.
    pub width: u32,
    /// Target height in pixels, or 0.
    pub height: u32,
    /// How the image fits the box.
    pub fit: Fit,
}

/// A crop rectangle in pixels of the (auto-oriented) source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width of the rectangle.
    pub width: u32,
    /// Height of the rectangle.
    pub height: u32,
}

/// A clockwise rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// No rotation.
    #[default]
    None,
    /// 90° clockwise.
    R90,
    /// 180°.
    R180,
    /// 270° clockwise (90° counter-clockwise).
    R270,
}

/// A transform job's parameters, applied in order: auto-orient, crop, rotate, flip, resize, encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformRecipe {
    /// Optional resize.
    pub resize: Option<Resize>,
    /// Optional crop.
    pub crop: Option<Crop>,
    /// Clockwise rotation.
    pub rotate: Rotation,
    /// Mirror left to right.
    pub flip_horizontal: bool,
    /// Mirror top to bottom.
    pub flip_vertical: bool,
    /// Apply the EXIF orientation first.
    pub auto_orient: bool,
    /// Output format; None keeps the source format.
    pub format: Option<Format>,
    /// 1..=100 for JPEG and lossy WebP (0 means 85). For WebP, 100 means lossless.
    pub quality: u8,
    /// Lossless WebP whatever the quality. PNG is always lossless; JPEG has no lossless mode, so
    /// asking for it with JPEG output is refused (1003).
    pub lossless: bool,
    /// Drop metadata; outputs never carry metadata, so this is always honoured.
    pub strip_metadata: bool,
}

impl Default for TransformRecipe {
    fn default() -> Self {
        TransformRecipe {
            resize: None,
            crop: None,
            rotate: Rotation::None,
            flip_horizontal: false,
            flip_vertical: false,
            auto_orient: true,
            format: None,
            quality: 85,
            lossless: false,
            strip_metadata: true,
        }
    }
}

/// Which outputs `basic_clean` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanTemplate {
    /// matting.png, white-bg.jpg and enhanced.jpg, in that order.
    All,
    /// matting.png: the product on a transparent background.
    Matting,
    /// white-bg.jpg: the product centred on a white square.
    WhiteBg,
    /// enhanced.jpg: levels, contrast and sharpening.
    Enhanced,
}

/// A small preview of an output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbnail {
    /// PNG when the output has alpha, else JPEG.
    pub format: Format,
    /// Width in pixels (longest side at most 256).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded thumbnail.
    pub data: Vec<u8>,
}

/// One encoded output of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// File name, e.g. "image.jpg" or "matting.png".
    pub name: String,
    /// Encoded format.
    pub format: Format,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded file.
    pub data: Vec<u8>,
    /// Its thumbnail.
    pub thumbnail: Thumbnail,
    /// How the subject was cut out, for basic_clean outputs made from a cut-out.
    pub matting: Option<MattingReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_name_their_mime_type_and_extension() {
        assert_eq!(Format::Jpeg.content_type(), "image/jpeg");
        assert_eq!(Format::Png.content_type(), "image/png");
        assert_eq!(Format::Webp.content_type(), "image/webp");
        assert_eq!(Format::Jpeg.extension(), "jpg");
        assert_eq!(Format::Png.extension(), "png");
        assert_eq!(Format::Webp.extension(), "webp");
    }

    #[test]
    fn default_limits_follow_the_spec() {
        let l = Limits::default();
        assert_eq!(l.max_pixels, 50_000_000);
        assert_eq!(l.min_side, 15);
        assert!(!l.model_aspect);
    }
}
