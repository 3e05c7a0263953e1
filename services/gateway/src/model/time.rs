//! Timestamps as RFC 3339 text (UTC, milliseconds) on the wire and protobuf `Timestamp` inside.

use chrono::DateTime;

pub use atelier_views::time::to_text;

use crate::error::ApiError;

/// The protobuf timestamp of RFC 3339 text in `field`; bad text is a 1003 naming the field.
pub fn parse(field: &str, text: &str) -> Result<prost_types::Timestamp, ApiError> {
    let t = DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| ApiError::field(field, format!("not an RFC 3339 timestamp ({e})")))?;
    Ok(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// Seconds between two protobuf timestamps, when both are set.
pub fn seconds_between(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Option<f64> {
    let (start, end) = (start?, end?);
    let s = start.seconds as f64 + f64::from(start.nanos) / 1e9;
    let e = end.seconds as f64 + f64::from(end.nanos) / 1e9;
    Some((e - s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ts = parse("deadline", "2030-01-02T03:04:05.678+01:00").expect("parse");
        assert_eq!(
            to_text(Some(&ts)).as_deref(),
            Some("2030-01-02T02:04:05.678Z")
        );
        assert!(parse("deadline", "tomorrow").is_err());
        assert_eq!(to_text(None), None);
    }
}
