//! The record's two time formats: MicroTime on a Lease (exactly six fractional digits, which the API
//! server requires) and RFC 3339 seconds in the annotation record, and the lenient reading of both.
//! Public for tools and custom locks that read or write records themselves.
//!
//! ```
//! use kube_elector::record::time::{format_micro_time, parse_micro_time_strict};
//! let t = parse_micro_time_strict("2026-11-27T09:33:18.123456Z").unwrap();
//! assert_eq!(format_micro_time(&t), "2026-11-27T09:33:18.123456Z");
//! assert!(parse_micro_time_strict("2026-11-27T09:33:18Z").is_none(), "six digits, as the server wants");
//! ```

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};

/// Format a time as a Kubernetes MicroTime: UTC, exactly six fractional digits
/// (`2026-11-27T09:33:18.123456Z`).
pub fn format_micro_time(t: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(27);
    write_micro_time(t, &mut out);
    out
}

/// Write a MicroTime into `out` (cleared first), reusing its buffer: every renew writes one. The common
/// case (years 0 to 9999, no leap second) is written digit by digit; anything else goes through chrono's
/// RFC 3339 formatter, which gives the same text.
pub(crate) fn write_micro_time(t: &DateTime<Utc>, out: &mut String) {
    out.clear();
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
    }
    let date = t.date_naive();
    let time = t.time();
    let fields = [
        (year as u32, 4, '-'),
        (date.month(), 2, '-'),
        (date.day(), 2, 'T'),
        (time.hour(), 2, ':'),
        (time.minute(), 2, ':'),
        (time.second(), 2, '.'),
        (nanos / 1000, 6, 'Z'),
    ];
    for (value, width, then) in fields {
        let mut div = 10u32.pow(width - 1);
        while div > 0 {
            out.push(char::from(b'0' + ((value / div) % 10) as u8));
            div /= 10;
        }
        out.push(then);
    }
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
/// fractional digits: what a custom lock's writes must pass. The elector itself reads leniently
/// ([`parse_time_lenient`]), since other clients write other shapes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    proptest::proptest! {
        #[test]
        fn micro_time_is_what_chrono_writes(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..2_000_000_000) {
            if let Some(t) = Utc.timestamp_opt(secs, nanos).single() {
                proptest::prop_assert_eq!(
                    format_micro_time(&t),
                    t.to_rfc3339_opts(SecondsFormat::Micros, true)
                );
            }
        }
    }
}
