//! Proxies: a kubeconfig `proxy-url` (http, https, socks5), else Go's environment rules
//! (`HTTPS_PROXY`/`HTTP_PROXY`, `NO_PROXY` with names, domain suffixes, IPs and CIDRs; loopback and
//! `localhost` never proxied). We decide per server ourselves and hand ureq an explicit proxy, because
//! ureq's own environment handling differs from Go's.

use std::net::IpAddr;

use crate::config::{Config, ServerUrl, split_host_port};

use crate::error::{ConfigErrorKind, Error, Result};

/// A proxy for ureq from a proxy URL as client-go accepts it (see [`crate::config::proxy_url`]).
pub(crate) fn parse_proxy_url(url: &str, what: &str) -> Result<ureq::Proxy> {
    let url = crate::config::proxy_url(url, what)?;
    ureq::Proxy::new(&url).map_err(|e| {
        Error::config(
            ConfigErrorKind::Proxy,
            format!("{what}: invalid proxy URL: {e}"),
        )
    })
}

/// The proxy for a config's server: its explicit `proxy-url`, else the environment's by Go's rules.
pub(crate) fn for_config(config: &Config) -> Result<Option<ureq::Proxy>> {
    match config.proxy_url() {
        Some(url) => parse_proxy_url(url, "proxy-url").map(Some),
        None => proxy_from_env(config.url()?, &|k| std::env::var(k).ok()),
    }
}

/// The proxy Go's `ProxyFromEnvironment` would pick for `server`, reading variables through `env`.
pub(crate) fn proxy_from_env(
    server: &ServerUrl,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ureq::Proxy>> {
    let get = |upper: &str, lower: &str| {
        env(upper)
            .or_else(|| env(lower))
            .filter(|v| !v.trim().is_empty())
    };
    let host = server.host();
    if host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    {
        return Ok(None);
    }
    let (value, name) = if server.is_https() {
        (get("HTTPS_PROXY", "https_proxy"), "HTTPS_PROXY")
    } else {
        (get("HTTP_PROXY", "http_proxy"), "HTTP_PROXY")
    };
    let Some(value) = value else { return Ok(None) };
    if let Some(no_proxy) = get("NO_PROXY", "no_proxy") {
        if no_proxy_matches(&no_proxy, host, server.port()) {
            return Ok(None);
        }
    }
    parse_proxy_url(&value, name).map(Some)
}

/// Go's `NO_PROXY` matching: `*`; IPs; CIDRs; `name` (itself and subdomains); `.name` and `*.name`
/// (subdomains only); each optionally with `:port`.
pub(crate) fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    for entry in no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
    {
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            if let (Ok(net), Ok(bits), Some(ip)) = (net.parse::<IpAddr>(), bits.parse::<u32>(), ip)
            {
                if in_cidr(ip, net, bits) {
                    return true;
                }
            }
            continue;
        }
        let Some((name, entry_port)) = split_host_port(&entry) else {
            continue;
        };
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        if let Ok(entry_ip) = name.parse::<IpAddr>() {
            if ip == Some(entry_ip) {
                return true;
            }
            continue;
        }
        let (suffix, match_self) = match name.strip_prefix("*.").or_else(|| name.strip_prefix('.'))
        {
            Some(rest) => (format!(".{rest}"), false),
            None => (format!(".{name}"), true),
        };
        if host.ends_with(&suffix) || (match_self && host == suffix[1..]) {
            return true;
        }
    }
    false
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> ServerUrl {
        ServerUrl::parse(u).unwrap()
    }
    use std::collections::HashMap;

    #[test]
    fn no_proxy_follows_go() {
        let cases = [
            ("*", "anything.example", 443, true),
            ("10.0.0.0/8", "10.96.0.1", 443, true),
            ("10.0.0.0/8", "11.0.0.1", 443, false),
            ("fd00::/8", "fd00:10::1", 443, true),
            ("10.96.0.1", "10.96.0.1", 443, true),
            ("example.com", "example.com", 443, true),
            ("example.com", "api.example.com", 443, true),
            ("example.com", "notexample.com", 443, false),
            (".example.com", "example.com", 443, false),
            (".example.com", "api.example.com", 443, true),
            ("*.example.com", "api.example.com", 443, true),
            ("example.com:6443", "example.com", 443, false),
            ("example.com:6443", "example.com", 6443, true),
            ("a.com, , EXAMPLE.com", "Api.Example.com", 443, true),
            ("", "example.com", 443, false),
        ];
        for (no_proxy, host, port, want) in cases {
            assert_eq!(
                no_proxy_matches(no_proxy, host, port),
                want,
                "{no_proxy:?} vs {host}:{port}"
            );
        }
    }

    fn env<'a>(vars: &'a HashMap<&str, &str>) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.get(k).map(|v| v.to_string())
    }

    #[test]
    fn environment_rules() {
        let vars = HashMap::from([
            ("HTTPS_PROXY", "proxy.corp:3128"),
            ("NO_PROXY", ".svc,10.0.0.0/8"),
        ]);
        let p = proxy_from_env(&url("https://api.cluster.example:6443"), &env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!((p.host(), p.port()), ("proxy.corp", 3128));
        assert!(
            proxy_from_env(&url("https://kubernetes.default.svc"), &env(&vars))
                .unwrap()
                .is_none()
        );
        assert!(
            proxy_from_env(&url("https://10.96.0.1:443"), &env(&vars))
                .unwrap()
                .is_none()
        );
        assert!(
            proxy_from_env(&url("https://127.0.0.1:6443"), &env(&vars))
                .unwrap()
                .is_none(),
            "loopback"
        );
        assert!(
            proxy_from_env(&url("https://[::1]:6443"), &env(&vars))
                .unwrap()
                .is_none(),
            "loopback v6"
        );
        assert!(
            proxy_from_env(&url("https://localhost:6443"), &env(&vars))
                .unwrap()
                .is_none()
        );
        assert!(
            proxy_from_env(&url("http://api.example"), &env(&vars))
                .unwrap()
                .is_none(),
            "http uses HTTP_PROXY"
        );
        let lower = HashMap::from([("https_proxy", "socks5://sock:1080")]);
        let p = proxy_from_env(&url("https://api.example"), &env(&lower))
            .unwrap()
            .unwrap();
        assert_eq!(
            p.protocol(),
            ureq::ProxyProtocol::Socks5h,
            "Go resolves names at a socks5 proxy"
        );
        let bad = HashMap::from([("HTTPS_PROXY", "ftp://x:1")]);
        let err = proxy_from_env(&url("https://api.example"), &env(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTPS_PROXY") && err.contains("ftp"), "{err}");
    }
}
