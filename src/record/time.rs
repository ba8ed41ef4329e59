//! The record's two time formats: MicroTime on a Lease (exactly six fractional digits, which the API
//! server requires) and RFC 3339 seconds in the annotation record, and the lenient reading of both.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Format a time as a Kubernetes MicroTime: UTC, exactly six fractional digits.
pub fn format_micro_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Format a time as RFC 3339 with seconds precision (the annotation record's format).
pub fn format_seconds_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parse a time leniently: RFC 3339 with any precision, or a naive `YYYY-MM-DD HH:MM:SS[.f]` (taken as UTC,
/// as the Python client writes it). Anything else is `None`.
pub fn parse_time_lenient(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for layout in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, layout) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Parse a MicroTime strictly, as the API server does: RFC 3339 in UTC or with an offset, exactly six
/// fractional digits. The embedded API server's validation (and the tests) use it; the elector itself
/// reads leniently.
#[cfg(any(test, feature = "testing"))]
pub fn parse_micro_time_strict(s: &str) -> Option<DateTime<Utc>> {
    let frac = s.split_once('.')?.1;
    let digits = frac.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits != 6 {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
