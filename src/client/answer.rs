//! Reading an answer: the body of a 2xx, a decoded `Status` error otherwise, `Retry-After` (capped), the
//! server's `Date`, and transport failures told apart from timeouts.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{ApiError, Error, Result};

/// The largest response body we read: lock objects are a few kilobytes.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// A 2xx answer: its body, and the server's clock when it answered.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The body.
    pub(crate) body: Vec<u8>,
    /// The `Date` header.
    pub(crate) date: Option<ServerDate>,
}

/// The `Date` header of an answer as it came (an HTTP date, `Fri, 27 Nov 2026 00:46:32 GMT`: 29
/// bytes). Kept raw, without allocating: only coordinated election reads it, through
/// [`parse`](ServerDate::parse).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerDate([u8; 32], u8);

impl ServerDate {
    fn of(response: &ureq::http::Response<ureq::Body>) -> Option<ServerDate> {
        let bytes = response.headers().get("date")?.as_bytes();
        let mut raw = ServerDate([0; 32], 0);
        let n = bytes.len().min(raw.0.len());
        raw.0[..n].copy_from_slice(&bytes[..n]);
        raw.1 = n as u8;
        Some(raw)
    }

    /// The time it names, if it is an HTTP date (whole seconds).
    pub(crate) fn parse(&self) -> Option<DateTime<Utc>> {
        let text = std::str::from_utf8(&self.0[..usize::from(self.1)]).ok()?;
        DateTime::parse_from_rfc2822(text)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// A failed request: a timeout, or a transport error.
pub(super) fn transport_error(
    e: ureq::Error,
    timeout: Duration,
    context: &dyn std::fmt::Display,
) -> Error {
    match e {
        ureq::Error::Timeout(_) => Error::Timeout {
            context: context.to_string(),
            after: timeout,
        },
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => Error::Timeout {
            context: context.to_string(),
            after: timeout,
        },
        other => Error::Transport {
            context: context.to_string(),
            source: Box::new(other),
        },
    }
}

/// The longest `Retry-After` taken at its word; the election honours at most a lease duration anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` in seconds (the form the API server sends), capped; an HTTP date or garbage is ignored.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Status, `Retry-After` and body of an answer (bounded by `MAX_BODY`).
pub(super) fn read_answer(
    mut response: ureq::http::Response<ureq::Body>,
    timeout: Duration,
    context: &dyn std::fmt::Display,
) -> Result<(u16, Option<Duration>, Vec<u8>)> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| transport_error(e, timeout, context))?;
    Ok((status, retry_after, body))
}

/// A 3xx answer as the error it is: the agent follows no redirect, and an API server sends none.
pub(super) fn refuse_redirect(
    response: &ureq::http::Response<ureq::Body>,
    context: &dyn std::fmt::Display,
) -> Result<()> {
    let code = response.status().as_u16();
    if !(300..400).contains(&code) {
        return Ok(());
    }
    let location = response.headers().get("location").map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(200)
            .collect::<String>()
    });
    Err(Error::from(ApiError::redirect(
        context.to_string(),
        code,
        location.as_deref(),
    )))
}

/// A 2xx answer, with the server's clock; any other answer is an API error decoded from its Status body.
pub(super) fn finish(
    result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    timeout: Duration,
    context: &dyn std::fmt::Display,
) -> Result<Answer> {
    let response = result.map_err(|e| transport_error(e, timeout, context))?;
    refuse_redirect(&response, context)?;
    let date = ServerDate::of(&response);
    let (status, retry_after, body) = read_answer(response, timeout, context)?;
    if (200..300).contains(&status) {
        Ok(Answer { body, date })
    } else {
        Err(Error::from(ApiError::from_response(
            context.to_string(),
            status,
            &body,
            retry_after,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_capped() {
        assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_retry_after_header_is_safe(value in ".{0,40}") {
            if let Some(d) = parse_retry_after(&value) {
                proptest::prop_assert!(d <= MAX_RETRY_AFTER);
            }
        }
    }
}
