//! Credentials at run time, from a config's [`Auth`]: the `Authorization` header for each request
//! (a token file re-read about every minute and after a 401, keeping the last good token; an exec
//! plugin run when its credential expires and after a 401), or a plugin's client certificate.
//!
//! Like client-go, a process keeps one cache per token file and per plugin configuration, shared by
//! every client that uses it: several electors on one kubeconfig run the plugin once, not once each.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::exec::{Bound, ExecCredential, ExecProvider};
use crate::config::{Auth, ClientIdentity, read_token};
use crate::error::Result;
use crate::sync::lock;

/// How often a token file is re-read: kubelet rotates projected service-account tokens well before
/// they expire, and client-go re-reads about every minute.
pub(crate) const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);

/// Where the `Authorization` header comes from.
#[derive(Clone, Default)]
pub(crate) enum Credentials {
    /// No header.
    #[default]
    None,
    /// A fixed bearer token, kept as the whole header value (`Bearer …`).
    Token(Arc<str>),
    /// A bearer token read from a file that may be rewritten (bound service-account tokens, `tokenFile`).
    TokenFile(Arc<TokenFile>),
    /// HTTP basic authentication, kept as the whole header value (`Basic …`).
    Basic { username: String, header: Arc<str> },
    /// An exec credential plugin: a token or a client certificate, cached until it expires.
    Exec(Arc<ExecProvider>),
}

/// What a request authenticates with: an `Authorization` header, or a client certificate from an exec
/// plugin (the TLS connection is rebuilt when it changes).
#[derive(Default)]
pub(crate) struct Resolved {
    pub(crate) header: Option<Arc<str>>,
    pub(crate) client_cert: Option<Arc<ClientIdentity>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::TokenFile(t) => write!(f, "TokenFile({})", t.path.display()),
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::Exec(p) => write!(f, "{p:?}"),
        }
    }
}

/// The live cache for `key`, shared with every other client that uses the same one.
fn shared<K: Eq + Hash, V>(
    registry: &Mutex<HashMap<K, Weak<V>>>,
    key: K,
    make: impl FnOnce() -> Result<V>,
) -> Result<Arc<V>> {
    let mut map = lock(registry);
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    map.retain(|_, v| v.strong_count() > 0);
    let fresh = Arc::new(make()?);
    map.insert(key, Arc::downgrade(&fresh));
    Ok(fresh)
}

static TOKEN_FILES: LazyLock<Mutex<HashMap<PathBuf, Weak<TokenFile>>>> =
    LazyLock::new(Default::default);
static PLUGINS: LazyLock<Mutex<HashMap<crate::config::ExecConfig, Weak<ExecProvider>>>> =
    LazyLock::new(Default::default);

impl Credentials {
    /// The run-time credentials for `auth`: token files and plugins shared process-wide.
    pub(crate) fn for_auth(auth: &Auth) -> Result<Self> {
        Ok(match auth {
            Auth::None => Credentials::None,
            Auth::Token(t) => Credentials::token(t),
            Auth::TokenFile(path) => {
                Credentials::TokenFile(shared(&TOKEN_FILES, path.clone(), || {
                    TokenFile::open(path)
                })?)
            }
            Auth::Basic { username, password } => Credentials::basic(username, password),
            Auth::Exec(e) => Credentials::Exec(shared(&PLUGINS, e.clone(), || {
                Ok(ExecProvider::new(e.clone()))
            })?),
        })
    }

    pub(crate) fn token(token: &str) -> Self {
        Credentials::Token(Arc::from(format!("Bearer {}", token.trim())))
    }

    pub(crate) fn basic(username: &str, password: &str) -> Self {
        let raw = format!("{username}:{password}");
        Credentials::Basic {
            username: username.to_string(),
            header: Arc::from(format!(
                "Basic {}",
                crate::config::base64_encode(raw.as_bytes())
            )),
        }
    }

    /// The credentials for the next request. Cheap when nothing needs re-reading or re-running; an exec
    /// plugin that has to run runs within `bound`.
    pub(crate) fn resolve(&self, bound: &Bound<'_>) -> Result<Resolved> {
        let header = |h: Arc<str>| Resolved {
            header: Some(h),
            client_cert: None,
        };
        match self {
            Credentials::None => Ok(Resolved::default()),
            Credentials::Token(h) | Credentials::Basic { header: h, .. } => Ok(header(h.clone())),
            Credentials::TokenFile(f) => f.header().map(header),
            Credentials::Exec(p) => Ok(match p.credential(bound)? {
                ExecCredential::Token(h) => header(h),
                ExecCredential::Certificate(c) => Resolved {
                    header: None,
                    client_cert: Some(c),
                },
            }),
        }
    }

    /// After a 401: make the next `resolve()` fetch fresh credentials. True when that may help (the
    /// request is worth retrying once).
    pub(crate) fn invalidate(&self) -> bool {
        match self {
            Credentials::TokenFile(f) => f.invalidate(),
            Credentials::Exec(p) => p.invalidate(),
            _ => false,
        }
    }
}

/// A bearer token file with its cached contents. `Debug` shows the path only.
pub(crate) struct TokenFile {
    path: PathBuf,
    state: Mutex<TokenState>,
}

struct TokenState {
    header: Option<Arc<str>>,
    token: String,
    read_at: Option<Instant>,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenFile {
    /// Read the file once now: a missing or empty token file is a configuration error.
    fn open(path: &Path) -> Result<Self> {
        let token = read_token(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new(TokenState {
                header: Some(Arc::from(format!("Bearer {token}"))),
                token,
                read_at: Some(Instant::now()),
            }),
        })
    }

    fn header(&self) -> Result<Arc<str>> {
        let mut st = lock(&self.state);
        let fresh = st.read_at.is_some_and(|t| t.elapsed() < TOKEN_FILE_REFRESH);
        if !fresh {
            match read_token(&self.path) {
                Ok(token) => {
                    if token != st.token {
                        log::info!(
                            "bearer token file {} changed: using the new token",
                            self.path.display()
                        );
                        st.header = Some(Arc::from(format!("Bearer {token}")));
                        st.token = token;
                    }
                }
                // Keep the last good token: the kubelet may be in the middle of rewriting the file.
                Err(e) => log::warn!("{e}; keeping the last good token"),
            }
            st.read_at = Some(Instant::now());
        }
        Ok(st.header.clone().expect("set at open"))
    }

    fn invalidate(&self) -> bool {
        let mut st = lock(&self.state);
        let before = st.token.clone();
        st.read_at = None;
        drop(st);
        // Worth a retry only if the file now holds another token.
        read_token(&self.path).is_ok_and(|t| t != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Bound<'static> {
        Bound {
            deadline: Instant::now() + Duration::from_secs(60),
            interrupted: &|| false,
        }
    }

    #[test]
    fn token_file_is_reread_after_invalidate_and_keeps_the_last_good_token() {
        let dir = std::env::temp_dir().join(format!("kube-elector-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "one\n").unwrap();
        let c = Credentials::TokenFile(Arc::new(TokenFile::open(&path).unwrap()));
        assert_eq!(&*c.resolve(&never()).unwrap().header.unwrap(), "Bearer one");
        std::fs::write(&path, "two").unwrap();
        assert_eq!(
            &*c.resolve(&never()).unwrap().header.unwrap(),
            "Bearer one",
            "cached for a minute"
        );
        assert!(c.invalidate(), "the file changed: a retry may help");
        assert_eq!(&*c.resolve(&never()).unwrap().header.unwrap(), "Bearer two");
        assert!(!c.invalidate(), "same token: retrying cannot help");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            &*c.resolve(&never()).unwrap().header.unwrap(),
            "Bearer two",
            "last good token kept"
        );
        assert!(TokenFile::open(&path).is_err());
        std::fs::write(&path, "  \n").unwrap();
        assert!(
            TokenFile::open(&path)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(!format!("{c:?}").contains("two"));
    }

    #[test]
    fn basic_auth_header() {
        let c = Credentials::basic("alice", "s3cret");
        assert_eq!(
            &*c.resolve(&never()).unwrap().header.unwrap(),
            "Basic YWxpY2U6czNjcmV0"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
