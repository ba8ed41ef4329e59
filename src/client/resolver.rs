//! Name resolution for the REST client. ureq resolves the host before every request, even when a pooled
//! connection will be reused, and with a timeout set it does so on a fresh thread: that alone tripled the
//! cost of a renew on loopback. IP-literal servers (in-cluster `KUBERNETES_SERVICE_HOST`, most kubeconfigs)
//! need no resolution at all, and names are cached briefly so pooled renews skip the thread.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a resolved name is reused. New connections after that resolve again, so DNS changes are
/// followed within this time.
const NAME_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct FastResolver {
    inner: DefaultResolver,
    cache: Mutex<Option<(String, ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for FastResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(authority) = uri.authority() else {
            return self.inner.resolve(uri, config, timeout);
        };
        let default_port = if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let mut out = self.empty();
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        let key = format!("{host}:{port}");
        if let Some((k, addrs, at)) = &*lock(&self.cache) {
            if *k == key && at.elapsed() < NAME_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *lock(&self.cache) = Some((key, addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}
