//! REST over one ureq `Agent`: GET/POST/PUT of JSON objects with a per-request timeout and `Status`
//! decoding. It knows nothing about leader election. Beside it, the run-time side of a
//! [`Config`]: credentials (`credentials.rs`, `exec.rs`), TLS (`tls.rs`, `tls_connector.rs`), proxies
//! (`proxy.rs`) and name resolution (`resolver.rs`).

mod agent;
mod answer;
mod credentials;
mod exec;
mod proxy;
mod resolver;
mod tls;
mod tls_connector;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::agent::AgentSlot;
pub(crate) use self::agent::Interrupter;
pub(crate) use self::answer::{Answer, ServerDate};
use self::answer::{finish, read_answer, refuse_redirect, transport_error};
use self::credentials::Credentials;
use self::exec::Bound;
use crate::config::Config;
use crate::error::{ApiError, Error, Result};

/// A blocking client for one API server, with one pooled connection.
pub(crate) struct RestClient {
    agent: Arc<Mutex<AgentSlot>>,
    config: Config,
    base: String,
    credentials: Credentials,
    /// `Impersonate-*` headers, computed once.
    extra_headers: Vec<(String, String)>,
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
            agent: Arc::new(Mutex::new(AgentSlot::new(config)?)),
            config: config.clone(),
            base: config.url()?.base().to_string(),
            credentials: Credentials::for_auth(config.auth())?,
            extra_headers: config
                .impersonation()
                .map(|i| i.headers())
                .unwrap_or_default(),
        })
    }

    /// A handle that interrupts this client's requests from another thread.
    pub(crate) fn interrupter(&self) -> Interrupter {
        Interrupter(self.agent.clone())
    }

    /// Open a streaming GET (a watch): the body as a line reader, for at most `max`. Non-2xx answers are
    /// API errors as usual.
    pub(crate) fn stream(
        &self,
        path: &dyn std::fmt::Display,
        max: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Box<dyn std::io::BufRead + Send>> {
        self.open_stream(path, max, context)
            .map_err(|e| e.on_server(&self.base))
    }

    fn open_stream(
        &self,
        path: &dyn std::fmt::Display,
        max: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Box<dyn std::io::BufRead + Send>> {
        let url = format!("{}{}", self.base, path);
        let resolved = self.credentials.resolve(&Bound {
            deadline: Instant::now() + max.min(Duration::from_secs(30)),
            interrupted: &|| self.is_interrupted(),
        })?;
        let agent = self.agent(resolved.client_cert.as_ref(), context)?;
        let req = self.authorize(agent.get(url), &resolved.header);
        let response = req
            .config()
            .timeout_global(Some(max))
            .build()
            .call()
            .map_err(|e| transport_error(e, max, context))?;
        refuse_redirect(&response, context)?;
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

    /// GET `path`; the answer's body (and the server's clock) for 2xx.
    pub(crate) fn get(
        &self,
        path: &dyn std::fmt::Display,
        timeout: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Answer> {
        self.request("GET", path, None, timeout, context)
    }

    /// POST a JSON body to `path`.
    pub(crate) fn post(
        &self,
        path: &dyn std::fmt::Display,
        body: &[u8],
        timeout: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Answer> {
        self.request("POST", path, Some(body), timeout, context)
    }

    /// PUT a JSON body to `path`.
    pub(crate) fn put(
        &self,
        path: &dyn std::fmt::Display,
        body: &[u8],
        timeout: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Answer> {
        self.request("PUT", path, Some(body), timeout, context)
    }

    /// One request; after a 401, once more with fresh credentials when they changed (a rotated token),
    /// within the same timeout.
    fn request(
        &self,
        verb: &str,
        path: &dyn std::fmt::Display,
        body: Option<&[u8]>,
        timeout: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Answer> {
        let start = Instant::now();
        let first = self.attempt(verb, path, body, timeout, context);
        let result = match first {
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
        };
        result.map_err(|e| e.on_server(&self.base))
    }

    fn attempt(
        &self,
        verb: &str,
        path: &dyn std::fmt::Display,
        body: Option<&[u8]>,
        timeout: Duration,
        context: &dyn std::fmt::Display,
    ) -> Result<Answer> {
        let url = format!("{}{}", self.base, path);
        // An exec plugin that has to run takes its time from the request's, never more.
        let deadline = Instant::now() + timeout;
        let resolved = self.credentials.resolve(&Bound {
            deadline,
            interrupted: &|| self.is_interrupted(),
        })?;
        let total = timeout;
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(Error::Timeout {
                context: context.to_string(),
                after: total,
            });
        }
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
        finish(result, timeout, context)
    }
}
