//! The engine's one error type, with the numeric codes of SPEC §5.

/// Why an image could not be probed, decoded, transformed or encoded.
#[derive(thiserror::Error, Debug)]
pub enum EngineError {
    /// Not a JPEG, PNG or WebP file (code 3003).
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// Too many pixels, a side too small or a bad aspect ratio (code 3004).
    #[error("invalid dimensions: {0}")]
    InvalidDimensions(String),
    /// The file claims a supported format but cannot be decoded (code 3017).
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The requested operation does not fit the image, e.g. a crop outside it (code 1003).
    #[error("invalid recipe: {0}")]
    InvalidRecipe(String),
    /// The output could not be encoded (code 1006).
    #[error("cannot encode image: {0}")]
    Encode(String),
    /// The matting step could not run: a model answered something that is not a mask (code 1006).
    #[error("matting failed: {0}")]
    Matting(String),
    /// The cut-out is not reliable enough to deliver (code 3010): the classical method on a busy
    /// photo, or a model that found no clear subject.
    #[error("{0}")]
    MattingUncertain(String),
}

impl EngineError {
    /// The numeric error code of SPEC §5.
    pub fn code(&self) -> u32 {
        match self {
            EngineError::UnsupportedFormat(_) => 3003,
            EngineError::InvalidDimensions(_) => 3004,
            EngineError::Decode(_) => 3017,
            EngineError::InvalidRecipe(_) => 1003,
            EngineError::Encode(_) | EngineError::Matting(_) => 1006,
            EngineError::MattingUncertain(_) => 3010,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_spec_table() {
        assert_eq!(EngineError::UnsupportedFormat(String::new()).code(), 3003);
        assert_eq!(EngineError::InvalidDimensions(String::new()).code(), 3004);
        assert_eq!(EngineError::Decode(String::new()).code(), 3017);
        assert_eq!(EngineError::InvalidRecipe(String::new()).code(), 1003);
        assert_eq!(EngineError::Encode(String::new()).code(), 1006);
        assert_eq!(EngineError::Matting(String::new()).code(), 1006);
        assert_eq!(EngineError::MattingUncertain(String::new()).code(), 3010);
    }

    #[test]
    fn messages_carry_the_detail() {
        let e = EngineError::InvalidRecipe("crop 10..20 is outside the 15 px wide image".into());
        assert_eq!(
            e.to_string(),
            "invalid recipe: crop 10..20 is outside the 15 px wide image"
        );
    }
}
