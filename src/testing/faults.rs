//! Fault rules: what the test server does to requests instead of (or before) answering them.

use crate::sync::{lock, wait};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Answer with this status and a matching `Status` body (and `Retry-After` when given).
    Status {
        /// The HTTP status code.
        code: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Answer with this status and this raw body (garbage, truncated JSON, a malformed object...).
    Body {
        /// The HTTP status code.
        code: u16,
        /// The body, sent as is with `Content-Type: application/json`.
        body: String,
    },
    /// Wait this long, then go on with the request (other faults may still apply).
    Latency(Duration),
    /// Hold the request until the fault is removed (or the server goes down), then answer it normally:
    /// a late write is still applied, as on a real API server.
    Hang,
    /// Answer with this 3xx status and a `Location` header pointing elsewhere, as a misconfigured proxy
    /// or load balancer in front of the API server would.
    Redirect {
        /// The HTTP status code (301, 302, 303, 307, 308).
        code: u16,
        /// Where the redirect points: a path on this server or any URL.
        location: String,
    },
    /// Close the connection without answering.
    DropConnection,
    /// Process the request, then send the status line, the headers and half the body, and close: the
    /// connection is reset mid-response (the write may or may not have been applied).
    ResetMidResponse,
}

/// A fault rule: an action, optionally limited to one client (by bearer token), one verb, and a number
/// of requests.
///
/// ```
/// use kube_elector::testing::Fault;
/// let f = Fault::status(503).for_token("candidate-a").for_verb("PUT").times(3);
/// # let _ = f;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub(crate) action: FaultAction,
    pub(crate) token: Option<String>,
    pub(crate) verb: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) remaining: Option<u64>,
}

impl Fault {
    fn new(action: FaultAction) -> Self {
        Fault {
            action,
            token: None,
            verb: None,
            path: None,
            remaining: None,
        }
    }

    /// Answer with `code` and a `Status` body.
    pub fn status(code: u16) -> Self {
        Self::new(FaultAction::Status {
            code,
            retry_after: None,
        })
    }

    /// Answer with `code`, a `Status` body and `Retry-After: secs`.
    pub fn status_retry_after(code: u16, secs: u64) -> Self {
        Self::new(FaultAction::Status {
            code,
            retry_after: Some(secs),
        })
    }

    /// Answer with `code` and `body` as is.
    pub fn body(code: u16, body: impl Into<String>) -> Self {
        Self::new(FaultAction::Body {
            code,
            body: body.into(),
        })
    }

    /// Answer with a redirect (`code`, e.g. 302) to `location` (a path or a URL).
    pub fn redirect(code: u16, location: impl Into<String>) -> Self {
        Self::new(FaultAction::Redirect {
            code,
            location: location.into(),
        })
    }

    /// Delay matching requests.
    pub fn latency(d: Duration) -> Self {
        Self::new(FaultAction::Latency(d))
    }

    /// Hold matching requests until the fault is removed.
    pub fn hang() -> Self {
        Self::new(FaultAction::Hang)
    }

    /// Close the connection instead of answering.
    pub fn drop_connection() -> Self {
        Self::new(FaultAction::DropConnection)
    }

    /// Answer only half of the response, then close.
    pub fn reset_mid_response() -> Self {
        Self::new(FaultAction::ResetMidResponse)
    }

    /// Only requests carrying this bearer token.
    pub fn for_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Only requests with this HTTP method (`GET`, `PUT`, `POST`, ...), or `WATCH` for watch requests.
    pub fn for_verb(mut self, verb: impl Into<String>) -> Self {
        self.verb = Some(verb.into().to_ascii_uppercase());
        self
    }

    /// Only requests whose path contains `part` (e.g. `/events`, `/leases/my-lock`).
    pub fn for_path(mut self, part: impl Into<String>) -> Self {
        self.path = Some(part.into());
        self
    }

    /// Only the next `n` matching requests; then the rule is gone.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, token: Option<&str>, verb: &str, path: &str) -> bool {
        self.token.as_deref().is_none_or(|t| Some(t) == token)
            && self.verb.as_deref().is_none_or(|v| v == verb)
            && self.path.as_deref().is_none_or(|p| path.contains(p))
    }
}

/// Identifies an injected fault so it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// What to do with a request after the faults had their say.
pub(crate) enum Verdict {
    Proceed,
    Answer {
        code: u16,
        body: Option<String>,
        /// Extra headers (`Retry-After`, `Location`).
        headers: Vec<(&'static str, String)>,
    },
    Drop,
    Truncate,
}

#[derive(Default)]
pub(crate) struct Faults {
    rules: Mutex<(u64, Vec<(u64, Fault)>)>,
    changed: Condvar,
}

impl Faults {
    pub(crate) fn add(&self, fault: Fault) -> FaultId {
        let mut g = lock(&self.rules);
        g.0 += 1;
        let id = g.0;
        g.1.push((id, fault));
        FaultId(id)
    }

    pub(crate) fn remove(&self, id: FaultId) {
        lock(&self.rules).1.retain(|(i, _)| *i != id.0);
        self.changed.notify_all();
    }

    pub(crate) fn clear(&self) {
        lock(&self.rules).1.clear();
        self.changed.notify_all();
    }

    /// Wake hung requests so they can notice the server went down.
    pub(crate) fn wake(&self) {
        self.changed.notify_all();
    }

    /// Apply the matching rules in order: latencies and hangs first, then the first answering rule.
    pub(crate) fn judge(
        &self,
        token: Option<&str>,
        verb: &str,
        path: &str,
        abort: &AtomicBool,
    ) -> Verdict {
        let mut delay = Duration::ZERO;
        let mut hangs = Vec::new();
        let mut verdict = Verdict::Proceed;
        {
            let mut g = lock(&self.rules);
            for (id, rule) in g.1.iter_mut() {
                // A used-up hang stays listed (its requests still wait) but matches no more.
                if rule.remaining == Some(0) || !rule.matches(token, verb, path) {
                    continue;
                }
                let answering = !matches!(rule.action, FaultAction::Latency(_) | FaultAction::Hang);
                if answering && !matches!(verdict, Verdict::Proceed) {
                    continue;
                }
                if let Some(n) = rule.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
                match &rule.action {
                    FaultAction::Latency(d) => delay += *d,
                    FaultAction::Hang => hangs.push(*id),
                    FaultAction::Status { code, retry_after } => {
                        verdict = Verdict::Answer {
                            code: *code,
                            body: None,
                            headers: retry_after
                                .iter()
                                .map(|s| ("Retry-After", s.to_string()))
                                .collect(),
                        }
                    }
                    FaultAction::Body { code, body } => {
                        verdict = Verdict::Answer {
                            code: *code,
                            body: Some(body.clone()),
                            headers: Vec::new(),
                        }
                    }
                    FaultAction::Redirect { code, location } => {
                        verdict = Verdict::Answer {
                            code: *code,
                            body: Some(String::new()),
                            headers: vec![("Location", location.clone())],
                        }
                    }
                    FaultAction::DropConnection => verdict = Verdict::Drop,
                    FaultAction::ResetMidResponse => verdict = Verdict::Truncate,
                }
            }
            g.1.retain(|(_, r)| r.remaining != Some(0) || matches!(r.action, FaultAction::Hang));
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if !hangs.is_empty() {
            let mut g = lock(&self.rules);
            while !abort.load(Ordering::Acquire) && g.1.iter().any(|(id, _)| hangs.contains(id)) {
                g = wait(&self.changed, g, Some(Duration::from_millis(100)));
            }
        }
        verdict
    }
}
