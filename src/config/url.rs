//! URLs in a config: the API server's, parsed once when a [`Config`](super::Config) is made (scheme,
//! host, port and path prefix; a user-info part is accepted but never sent or printed), and proxy URLs
//! as client-go accepts them.

use std::fmt;

use crate::error::{ConfigErrorKind, Error, Result};

/// A parsed `http(s)://host[:port][/prefix]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    https: bool,
    /// The host without IPv6 brackets.
    host: String,
    port: u16,
    /// `scheme://host[:port][/prefix]` as given, without user-info or a trailing slash: where requests
    /// go.
    base: String,
}

impl ServerUrl {
    /// Parse a server URL; the error says what is wrong with it.
    pub(crate) fn parse(raw: &str) -> Result<ServerUrl> {
        let bad = |why: &str| {
            Error::config(
                ConfigErrorKind::ServerUrl,
                format!("{:?} {why}", redact(raw.trim())),
            )
        };
        let (scheme, rest) = raw
            .trim()
            .split_once("://")
            .ok_or_else(|| bad("must start with https:// (or http:// for a local test server)"))?;
        let rest = rest.trim_end_matches('/');
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(bad(
                    "must start with https:// (or http:// for a local test server)",
                ));
            }
        };
        if rest.contains(['?', '#']) {
            return Err(bad("must not carry a query or a fragment"));
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = split_host_port(host_port).ok_or_else(|| bad("has an invalid port"))?;
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if host.contains(':') && !host_port.starts_with('[') {
            return Err(bad("has an IPv6 host without brackets ([::1]:6443)"));
        }
        let default_port = if https { 443 } else { 80 };
        Ok(ServerUrl {
            https,
            host: host.to_string(),
            port: port.unwrap_or(default_port),
            base: format!("{}://{host_port}{path}", scheme.to_ascii_lowercase()),
        })
    }

    /// Whether the scheme is `https`.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// The host, without IPv6 brackets.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The port, or the scheme's default.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Where requests go: `scheme://host[:port][/prefix]`, never with user-info.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// A proxy URL as client-go accepts it: `http`, `https` or `socks5` (which resolves names at the proxy,
/// as Go does, so it becomes `socks5h`); a URL without a scheme is `http`.
pub(crate) fn proxy_url(url: &str, what: &str) -> Result<String> {
    let url = url.trim();
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "http" | "https" | "socks5h" => Ok(url.clone()),
        "socks5" => Ok(url.replacen("socks5://", "socks5h://", 1)),
        other => Err(Error::config(
            ConfigErrorKind::Proxy,
            format!("{what}: proxy scheme {other:?} is not supported (use http, https or socks5)"),
        )),
    }
}

/// `host:port`, `[v6]:port` or `host` → (host without brackets, port if given). `None` for a port
/// that is not a number.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().map(Some);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, port(p)?)),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, port(p)?)),
        _ => Some((authority, None)),
    }
}

/// `scheme://user:pass@host` → `scheme://<redacted>@host`: for messages about URLs that may carry
/// credentials.
pub(crate) fn redact(url: &str) -> String {
    let authority_end = url
        .find("://")
        .map(|s| s + 3 + url[s + 3..].find('/').unwrap_or(url.len() - s - 3));
    match (url.find("://"), authority_end) {
        (Some(s), Some(end)) => match url[..end].rfind('@') {
            Some(at) if at > s => format!("{}<redacted>{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        },
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kubeconfigs_hold() {
        let u = ServerUrl::parse("https://10.96.0.1:443/").unwrap();
        assert!(u.is_https());
        assert_eq!(
            (u.host(), u.port(), u.base()),
            ("10.96.0.1", 443, "https://10.96.0.1:443")
        );
        let u = ServerUrl::parse("https://api.example").unwrap();
        assert_eq!((u.host(), u.port()), ("api.example", 443));
        let u = ServerUrl::parse("http://127.0.0.1:8080/prefix/").unwrap();
        assert!(!u.is_https());
        assert_eq!((u.port(), u.base()), (8080, "http://127.0.0.1:8080/prefix"));
        let u = ServerUrl::parse("https://[::1]:6443").unwrap();
        assert_eq!(
            (u.host(), u.port(), u.base()),
            ("::1", 6443, "https://[::1]:6443")
        );
        let u = ServerUrl::parse("  HTTPS://user:secret@api.example:6443/k8s ").unwrap();
        assert_eq!(
            u.base(),
            "https://api.example:6443/k8s",
            "user-info never travels"
        );
        assert!(!format!("{u:?}").contains("secret"));
    }

    #[test]
    fn says_what_is_wrong() {
        for (url, why) in [
            ("api.example:6443", "must start with https://"),
            ("ftp://api.example", "must start with https://"),
            ("https://", "has no host"),
            ("https://:6443", "has no host"),
            ("https://api.example:port", "invalid port"),
            ("https://api.example:99999", "invalid port"),
            ("https://::1:6443", "IPv6 host without brackets"),
            ("https://[::1", "invalid port"),
            ("https://api.example/?x=1", "query"),
            ("https://user:secret@api.example:x", "invalid port"),
        ] {
            let e = ServerUrl::parse(url).unwrap_err();
            assert_eq!(e.config_kind(), Some(ConfigErrorKind::ServerUrl));
            assert!(e.to_string().contains(why), "{url}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn redacts_user_info_only() {
        assert_eq!(redact("https://u:p@h:1/x@y"), "https://<redacted>@h:1/x@y");
        assert_eq!(redact("https://h:1/x@y"), "https://h:1/x@y");
        assert_eq!(
            redact("socks5://u:p@proxy:1080"),
            "socks5://<redacted>@proxy:1080"
        );
        assert_eq!(redact("no scheme@all"), "no scheme@all");
    }
}
