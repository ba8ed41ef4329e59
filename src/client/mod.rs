//! REST over one ureq `Agent`: GET/POST/PUT of JSON objects with a per-request timeout and `Status`
//! decoding. It knows nothing about leader election. Beside it, the run-time side of a
//! [`Config`]: credentials (`credentials.rs`, `exec.rs`), TLS (`tls.rs`, `tls_connector.rs`), proxies
//! (`proxy.rs`) and name resolution (`resolver.rs`).

mod credentials;
mod exec;
mod proxy;
mod resolver;
mod tls;
mod tls_connector;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ureq::Agent;

use self::credentials::Credentials;
use crate::config::{ClientIdentity, Config};
use crate::error::{ApiError, Error, Result};

/// The largest response body we read: lock objects are a few kilobytes.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// The agent of a client, and the exec-plugin client certificate it was built with (rebuilt when that
/// changes).
struct AgentSlot {
    agent: Agent,
    cert: Option<Arc<ClientIdentity>>,
    /// Interrupted: every request fails until [`Interrupter::resume`].
    interrupted: bool,
    /// The agent was shut down: build a new one for the next request.
    closed: bool,
}

/// Interrupts a client's requests in flight from another thread, and refuses new ones until resumed.
#[derive(Clone)]
pub(crate) struct Interrupter(Arc<Mutex<AgentSlot>>);

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter").finish_non_exhaustive()
    }
}

impl Interrupter {
    /// Interrupt whatever is in flight (ureq's `Agent::shutdown`) and refuse new requests.
    pub(crate) fn interrupt(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.interrupted = true;
        slot.closed = true;
        slot.agent.clone().shutdown();
    }

    /// Accept requests again, on a fresh connection.
    pub(crate) fn resume(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).interrupted = false;
    }
}

/// A blocking client for one API server, with one pooled connection.
pub(crate) struct RestClient {
    agent: Arc<Mutex<AgentSlot>>,
    config: Config,
    base: String,
    credentials: Credentials,
    /// `Impersonate-*` headers, computed once.
    extra_headers: Vec<(String, String)>,
    /// The `Date` header of the last answer: the API server's clock.
    last_date: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// Build a client with its own agent (and so its own pooled connection).
    pub(crate) fn new(config: &Config) -> Result<Self> {
        config.validate()?;
        Ok(RestClient {
            agent: Arc::new(Mutex::new(AgentSlot {
                agent: build_agent(config)?,
                cert: None,
                interrupted: false,
                closed: false,
            })),
            config: config.clone(),
            base: config.url()?.base().to_string(),
            credentials: Credentials::for_auth(config.auth())?,
            extra_headers: config
                .impersonation()
                .map(|i| i.headers())
                .unwrap_or_default(),
            last_date: Mutex::new(None),
        })
    }

    /// The API server's clock in its last answer (its `Date` header, whole seconds).
    pub(crate) fn last_server_date(&self) -> Option<DateTime<Utc>> {
        *self.last_date.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent for a request: the current one, or a new one when an exec plugin handed us another
    /// client certificate or the old one was shut down by an interrupt.
    fn agent(&self, cert: Option<&Arc<ClientIdentity>>, context: &str) -> Result<Agent> {
        let mut slot = self.agent.lock().unwrap_or_else(|p| p.into_inner());
        if slot.interrupted {
            return Err(Error::Interrupted {
                context: context.to_string(),
            });
        }
        let same = match (cert, &slot.cert) {
            (None, _) => !slot.closed,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) && !slot.closed,
            (Some(_), None) => false,
        };
        if !same {
            let cert = cert.cloned().or_else(|| slot.cert.clone());
            let config = match &cert {
                Some(c) => self
                    .config
                    .clone()
                    .with_client_cert(c.cert_pem.clone(), c.key_pem.clone()),
                None => self.config.clone(),
            };
            slot.agent = build_agent(&config)?;
            slot.cert = cert;
            slot.closed = false;
        }
        Ok(slot.agent.clone())
    }

    /// A handle that interrupts this client's requests from another thread.
    pub(crate) fn interrupter(&self) -> Interrupter {
        Interrupter(self.agent.clone())
    }

    /// Open a streaming GET (a watch): the body as a line reader, for at most `max`. Non-2xx answers are
    /// API errors as usual.
    pub(crate) fn stream(
        &self,
        path: &str,
        max: Duration,
        context: &str,
    ) -> Result<Box<dyn std::io::BufRead + Send>> {
        let url = format!("{}{}", self.base, path);
        let resolved = self.credentials.resolve()?;
        let agent = self.agent(resolved.client_cert.as_ref(), context)?;
        let req = self.authorize(agent.get(url), &resolved.header);
        let response = req
            .config()
            .timeout_global(Some(max))
            .build()
            .call()
            .map_err(|e| transport_error(e, max, context))?;
        if !response.status().is_success() {
            let (status, retry_after, body) = read_answer(response, max, context)?;
            return Err(Error::from(ApiError::from_response(
                context.to_string(),
                status,
                &body,
                retry_after,
            )));
        }
        let reader = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        Ok(Box::new(std::io::BufReader::new(reader)))
    }

    /// The `Authorization` and impersonation headers on a request.
    fn authorize<B>(
        &self,
        mut req: ureq::RequestBuilder<B>,
        authorization: &Option<Arc<str>>,
    ) -> ureq::RequestBuilder<B> {
        if let Some(a) = authorization {
            req = req.header("Authorization", &**a);
        }
        for (k, v) in &self.extra_headers {
            req = req.header(k, v);
        }
        req
    }

    /// Interrupt every request in flight on this client, from another thread (ureq's `Agent::shutdown`).
    pub(crate) fn shutdown(&self) {
        self.interrupter().interrupt();
    }

    /// GET `path`; `Ok(body)` for 2xx.
    pub(crate) fn get(&self, path: &str, timeout: Duration, context: &str) -> Result<Vec<u8>> {
        self.request("GET", path, None, timeout, context)
    }

    /// POST a JSON body to `path`.
    pub(crate) fn post(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        self.request("POST", path, Some(body), timeout, context)
    }

    /// PUT a JSON body to `path`.
    pub(crate) fn put(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        self.request("PUT", path, Some(body), timeout, context)
    }

    /// One request; after a 401, once more with fresh credentials when they changed (a rotated token),
    /// within the same timeout.
    fn request(
        &self,
        verb: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        let start = Instant::now();
        let first = self.attempt(verb, path, body, timeout, context);
        match first {
            Err(Error::Api(ref e)) if e.code == 401 && self.credentials.invalidate() => {
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return first;
                }
                log::info!(
                    "{context}: 401 Unauthorized; retrying once with the refreshed credentials"
                );
                self.attempt(verb, path, body, left, context)
            }
            other => other,
        }
    }

    fn attempt(
        &self,
        verb: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        let url = format!("{}{}", self.base, path);
        let resolved = self.credentials.resolve()?;
        let agent = self.agent(resolved.client_cert.as_ref(), context)?;
        let authorization = resolved.header;
        let result = match (verb, body) {
            ("GET", _) => self
                .authorize(agent.get(url), &authorization)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call(),
            (_, body) => {
                let req = if verb == "POST" {
                    agent.post(url)
                } else {
                    agent.put(url)
                };
                self.authorize(
                    req.header("Content-Type", "application/json"),
                    &authorization,
                )
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(body.unwrap_or_default())
            }
        };
        if let Ok(response) = &result {
            if let Some(date) = server_date(response) {
                *self.last_date.lock().unwrap_or_else(|p| p.into_inner()) = Some(date);
            }
        }
        finish(result, timeout, context)
    }
}

/// The `Date` header of an answer (an HTTP date: `Fri, 27 Nov 2026 00:46:32 GMT`).
fn server_date(response: &ureq::http::Response<ureq::Body>) -> Option<DateTime<Utc>> {
    let text = response.headers().get("date")?.to_str().ok()?;
    DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// One ureq agent for a config: its TLS settings, our resolver, statuses as values.
fn build_agent(config: &Config) -> Result<Agent> {
    let tls = tls::tls_config(config)?;
    let agent_config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        // Always explicit: ureq's own proxy environment handling differs from Go's rules.
        .proxy(proxy::for_config(config)?)
        .user_agent(concat!("kube-elector/", env!("CARGO_PKG_VERSION")))
        .accept("application/json")
        .max_idle_connections_per_host(2)
        .build();
    let url = config.url()?;
    match config
        .tls_server_name()
        .filter(|_| url.is_https() && !config.insecure_skip_tls_verify())
    {
        None => Ok(Agent::with_parts(
            agent_config,
            ureq::unversioned::transport::DefaultConnector::new(),
            resolver::FastResolver::default(),
        )),
        Some(name) => {
            use ureq::unversioned::transport::{
                ConnectProxyConnector, Connector, SocksConnector, TcpConnector,
            };
            let (tls, server_name) = tls::server_name_config(config, name)?;
            let host = url.host();
            // ureq's default chain, with our TLS step in place of its own.
            let connector =
                ().chain(SocksConnector::default())
                    .chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(tls_connector::ServerNameTls {
                        config: tls,
                        host: host.to_string(),
                        server_name,
                    });
            Ok(Agent::with_parts(
                agent_config,
                connector,
                resolver::FastResolver::default(),
            ))
        }
    }
}

/// A failed request: a timeout, or a transport error.
fn transport_error(e: ureq::Error, timeout: Duration, context: &str) -> Error {
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
fn read_answer(
    mut response: ureq::http::Response<ureq::Body>,
    timeout: Duration,
    context: &str,
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

/// The body of a 2xx answer; any other answer is an API error decoded from its Status body.
fn finish(
    result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    timeout: Duration,
    context: &str,
) -> Result<Vec<u8>> {
    let response = result.map_err(|e| transport_error(e, timeout, context))?;
    let (status, retry_after, body) = read_answer(response, timeout, context)?;
    if (200..300).contains(&status) {
        Ok(body)
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
