//! REST over one ureq `Agent`: GET/POST/PUT of JSON objects with a per-request timeout and `Status`
//! decoding. It knows nothing about leader election.

mod resolver;

use std::time::Duration;

use ureq::Agent;

use crate::config::Config;
use crate::error::{ApiError, Error, Result};

/// The largest response body we read: lock objects are a few kilobytes.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// A blocking client for one API server. Cloning shares the connection pool.
#[derive(Clone)]
pub(crate) struct RestClient {
    agent: Agent,
    base: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl RestClient {
    /// Build a client with its own agent (and so its own pooled connection).
    pub(crate) fn new(config: &Config) -> Result<Self> {
        config.validate()?;
        let tls = crate::config::tls_config(config)?;
        let config_ureq = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            // Never rely on ureq's own proxy environment handling (it differs from Go's rules).
            .proxy(None)
            .user_agent(concat!("kube-elector/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .max_idle_connections_per_host(2)
            .build();
        let agent = Agent::with_parts(
            config_ureq,
            ureq::unversioned::transport::DefaultConnector::new(),
            resolver::FastResolver::default(),
        );
        Ok(RestClient {
            agent,
            base: config.server().to_string(),
            authorization: config.token().map(|t| format!("Bearer {t}")),
        })
    }

    /// GET `path`; `Ok(body)` for 2xx.
    pub(crate) fn get(&self, path: &str, timeout: Duration, context: &str) -> Result<Vec<u8>> {
        let mut req = self.agent.get(format!("{}{}", self.base, path));
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let result = req.config().timeout_global(Some(timeout)).build().call();
        finish(result, timeout, context)
    }

    /// POST a JSON body to `path`.
    pub(crate) fn post(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        self.send("POST", path, body, timeout, context)
    }

    /// PUT a JSON body to `path`.
    pub(crate) fn put(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        self.send("PUT", path, body, timeout, context)
    }

    fn send(
        &self,
        verb: &str,
        path: &str,
        body: &[u8],
        timeout: Duration,
        context: &str,
    ) -> Result<Vec<u8>> {
        let url = format!("{}{}", self.base, path);
        let mut req = if verb == "POST" {
            self.agent.post(url)
        } else {
            self.agent.put(url)
        };
        req = req.header("Content-Type", "application/json");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let result = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        finish(result, timeout, context)
    }
}

fn finish(
    result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    timeout: Duration,
    context: &str,
) -> Result<Vec<u8>> {
    let transport = |e: ureq::Error| match e {
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
            source: other,
        },
    };
    let mut response = result.map_err(transport)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => Error::Timeout {
                context: context.to_string(),
                after: timeout,
            },
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Error::Timeout {
                    context: context.to_string(),
                    after: timeout,
                }
            }
            other => Error::Transport {
                context: context.to_string(),
                source: other,
            },
        })?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(Error::Api(ApiError::from_response(
            context.to_string(),
            status,
            &body,
            retry_after,
        )))
    }
}
