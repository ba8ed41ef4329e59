//! The ureq agent behind a client: built from a config (TLS, proxy, our resolver, the
//! `tls-server-name` connector), rebuilt when an exec plugin hands out another client certificate, and
//! interruptible from another thread.

use std::sync::{Arc, Mutex};

use ureq::Agent;

use super::{RestClient, proxy, resolver, tls, tls_connector};
use crate::config::{ClientIdentity, Config};
use crate::error::{Error, Result};
use crate::sync::lock;

/// The agent of a client, and the exec-plugin client certificate it was built with (rebuilt when that
/// changes).
pub(super) struct AgentSlot {
    agent: Agent,
    cert: Option<Arc<ClientIdentity>>,
    /// Interrupted: every request fails until [`Interrupter::resume`].
    interrupted: bool,
    /// The agent was shut down: build a new one for the next request.
    closed: bool,
}

/// Interrupts a client's requests in flight from another thread, and refuses new ones until resumed.
#[derive(Clone)]
pub(crate) struct Interrupter(pub(super) Arc<Mutex<AgentSlot>>);

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter").finish_non_exhaustive()
    }
}

impl Interrupter {
    /// Interrupt whatever is in flight (ureq's `Agent::shutdown`) and refuse new requests.
    pub(crate) fn interrupt(&self) {
        let mut slot = lock(&self.0);
        slot.interrupted = true;
        slot.closed = true;
        slot.agent.clone().shutdown();
    }

    /// Accept requests again, on a fresh connection.
    pub(crate) fn resume(&self) {
        lock(&self.0).interrupted = false;
    }
}

impl AgentSlot {
    pub(super) fn new(config: &Config) -> Result<Self> {
        Ok(AgentSlot {
            agent: build_agent(config)?,
            cert: None,
            interrupted: false,
            closed: false,
        })
    }
}

impl RestClient {
    /// Whether `stop()` has interrupted this client (it refuses requests until resumed).
    pub(super) fn is_interrupted(&self) -> bool {
        lock(&self.agent).interrupted
    }

    /// The agent for a request: the current one, or a new one when an exec plugin handed us another
    /// client certificate or the old one was shut down by an interrupt.
    pub(super) fn agent(
        &self,
        cert: Option<&Arc<ClientIdentity>>,
        context: &dyn std::fmt::Display,
    ) -> Result<Agent> {
        let mut slot = lock(&self.agent);
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
}

/// Each pooled connection's buffers. ureq's default is 128 KiB each way, sized for downloads; an API
/// server's answer headers are well under 1 KiB, bodies stream through the input buffer, and a request
/// is written a header line at a time, so 16 KiB holds any header line a cluster's credentials make
/// (bearer tokens are a few KiB at most). An elector keeps one or two connections; a set, one per
/// request thread.
const CONNECTION_BUFFER: usize = 16 * 1024;

/// One ureq agent for a config: its TLS settings, our resolver, statuses as values.
fn build_agent(config: &Config) -> Result<Agent> {
    let url = config.url()?;
    // Always explicit: ureq's own proxy environment handling differs from Go's rules.
    let proxy = proxy::for_config(config)?;
    let tls_used = url.is_https()
        || proxy
            .as_ref()
            .is_some_and(|p| p.protocol() == ureq::ProxyProtocol::Https);
    let tls = tls::tls_config(config, tls_used)?;
    let agent_config = Agent::config_builder()
        .http_status_as_error(false)
        // An API server never redirects an elector's requests: a 3xx is a failed request (and so
        // credentials never follow one to another host).
        .max_redirects(0)
        .tls_config(tls)
        .proxy(proxy)
        .user_agent(concat!("kube-elector/", env!("CARGO_PKG_VERSION")))
        .accept("application/json")
        .max_idle_connections_per_host(2)
        .input_buffer_size(CONNECTION_BUFFER)
        .output_buffer_size(CONNECTION_BUFFER)
        .build();
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
