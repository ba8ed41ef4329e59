//! A Kubernetes `Status` error answer, decoded: the code, the machine-readable reason and the message.

use std::fmt;
use std::time::Duration;

/// The machine-readable `reason` of a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusReason {
    /// 404: the object does not exist.
    NotFound,
    /// 409: the `resourceVersion` sent is stale.
    Conflict,
    /// 409: a create found the object already there.
    AlreadyExists,
    /// 422: a field is invalid (see the message for the causes).
    Invalid,
    /// 400: the body could not be decoded.
    BadRequest,
    /// 401: the credentials were not accepted.
    Unauthorized,
    /// 403: RBAC does not allow the verb.
    Forbidden,
    /// 429: the API server asks the client to slow down.
    TooManyRequests,
    /// 500.
    InternalError,
    /// 503.
    ServiceUnavailable,
    /// 504.
    Timeout,
    /// 3xx: the server (or something in front of it) answered with a redirect. An API server never
    /// redirects the requests an elector makes, so the redirect is not followed.
    Redirect,
    /// Any other reason string (or none).
    Other(String),
}

impl StatusReason {
    /// Parse the `reason` field of a Status, falling back to the HTTP code when it is empty. The
    /// reasons the election acts on (`NotFound`, `Conflict`, `AlreadyExists`) count only with the code
    /// the API server sends them with (404, 409), so a body cannot make an answer mean what its status
    /// does not.
    pub fn from_reason(reason: &str, code: u16) -> Self {
        if (300..400).contains(&code) {
            return Self::Redirect;
        }
        match reason {
            "NotFound" if code == 404 => Self::NotFound,
            "Conflict" if code == 409 => Self::Conflict,
            "AlreadyExists" if code == 409 => Self::AlreadyExists,
            "NotFound" | "Conflict" | "AlreadyExists" => Self::from_code(code),
            "Invalid" => Self::Invalid,
            "BadRequest" => Self::BadRequest,
            "Unauthorized" => Self::Unauthorized,
            "Forbidden" => Self::Forbidden,
            "TooManyRequests" => Self::TooManyRequests,
            "InternalError" => Self::InternalError,
            "ServiceUnavailable" => Self::ServiceUnavailable,
            "Timeout" => Self::Timeout,
            "" => Self::from_code(code),
            other => Self::Other(other.to_string()),
        }
    }

    /// The reason the API server would give for a bare HTTP code.
    pub fn from_code(code: u16) -> Self {
        match code {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            409 => Self::Conflict,
            422 => Self::Invalid,
            429 => Self::TooManyRequests,
            500 => Self::InternalError,
            503 => Self::ServiceUnavailable,
            504 => Self::Timeout,
            300..=399 => Self::Redirect,
            _ => Self::Other(String::new()),
        }
    }

    /// The reason as the API server spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => "NotFound",
            Self::Conflict => "Conflict",
            Self::AlreadyExists => "AlreadyExists",
            Self::Invalid => "Invalid",
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Timeout => "Timeout",
            Self::Redirect => "Redirect",
            Self::Other(s) => s,
        }
    }
}

/// An error answer from the API server, decoded from its `Status` body when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What was being done, e.g. `PUT default/my-lease`.
    pub context: String,
    /// The HTTP status code.
    pub code: u16,
    /// The Status `reason` (derived from the code when the body had none).
    pub reason: StatusReason,
    /// The Status `message`, or the start of the body when it was not a Status.
    pub message: String,
    /// The `Retry-After` header, when the server sent one (429, 503).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// A 3xx answer pointing at `location`: a failed request, never followed.
    pub(crate) fn redirect(context: String, code: u16, location: Option<&str>) -> Self {
        ApiError {
            context,
            code,
            reason: StatusReason::Redirect,
            message: format!(
                "a redirect to {}",
                location.unwrap_or("(no Location header)")
            ),
            retry_after: None,
        }
    }

    /// Decode an error response. Never fails: a body that is not a Status still yields the code.
    pub fn from_response(
        context: String,
        code: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        #[derive(serde::Deserialize)]
        struct Status {
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            reason: Option<String>,
        }
        let (reason, message) = match serde_json::from_slice::<Status>(body) {
            Ok(s) => (
                StatusReason::from_reason(s.reason.as_deref().unwrap_or(""), code),
                s.message.unwrap_or_default(),
            ),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut text: String = text.chars().take(200).collect();
                if text.is_empty() {
                    text = "(empty body)".into();
                }
                (StatusReason::from_code(code), text)
            }
        };
        ApiError {
            context,
            code,
            reason,
            message,
            retry_after,
        }
    }

    fn hint(&self) -> &'static str {
        match self.reason {
            StatusReason::Unauthorized => " (check the bearer token or client certificate)",
            StatusReason::Redirect => {
                ": an API server never redirects these requests, so it is not followed (does the server URL point at a proxy, a load balancer or a login page instead of the API server?)"
            }
            StatusReason::Forbidden => {
                " (grant the elector's service account get, create and update on this resource, and list and watch to watch it: see README, RBAC)"
            }
            _ => "",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: API server answered {} {}: {}{}",
            self.context,
            self.code,
            self.reason.as_str(),
            self.message,
            self.hint()
        )
    }
}

impl std::error::Error for ApiError {}
