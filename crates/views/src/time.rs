//! Timestamps as RFC 3339 text (UTC, milliseconds).

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 text of a protobuf timestamp; `None` when unset or out of range.
pub fn to_text(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(ts.seconds, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
