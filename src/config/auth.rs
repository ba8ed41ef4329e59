//! Credentials that go in the `Authorization` header: static and file-backed bearer tokens (the file is
//! re-read about every minute and after a 401, keeping the last good token) and basic auth.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{ConfigErrorKind, Error, Result};

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
    Exec(Arc<super::exec::ExecProvider>),
}

/// What a request authenticates with: an `Authorization` header, or a client certificate from an exec
/// plugin (the TLS connection is rebuilt when it changes).
#[derive(Default)]
pub(crate) struct Resolved {
    pub(crate) header: Option<Arc<str>>,
    pub(crate) client_cert: Option<Arc<super::ClientIdentity>>,
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

impl Credentials {
    pub(crate) fn token(token: &str) -> Self {
        Credentials::Token(Arc::from(format!("Bearer {}", token.trim())))
    }

    pub(crate) fn basic(username: &str, password: &str) -> Self {
        let raw = format!("{username}:{password}");
        Credentials::Basic {
            username: username.to_string(),
            header: Arc::from(format!("Basic {}", super::base64::encode(raw.as_bytes()))),
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Credentials::None)
    }

    /// The credentials for the next request. Cheap when nothing needs re-reading or re-running.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        let header = |h: Arc<str>| Resolved {
            header: Some(h),
            client_cert: None,
        };
        match self {
            Credentials::None => Ok(Resolved::default()),
            Credentials::Token(h) | Credentials::Basic { header: h, .. } => Ok(header(h.clone())),
            Credentials::TokenFile(f) => f.header().map(header),
            Credentials::Exec(p) => Ok(match p.credential()? {
                super::exec::ExecCredential::Token(h) => header(h),
                super::exec::ExecCredential::Certificate(c) => Resolved {
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
    pub(crate) fn open(path: &Path) -> Result<Self> {
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
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.token.clone();
        st.read_at = None;
        drop(st);
        // Worth a retry only if the file now holds another token.
        read_token(&self.path).is_ok_and(|t| t != before)
    }
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config_io(
            ConfigErrorKind::Token,
            format!("reading bearer token file {}", path.display()),
            e,
        )
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(Error::config(
            ConfigErrorKind::Token,
            format!("bearer token file {} is empty", path.display()),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_reread_after_invalidate_and_keeps_the_last_good_token() {
        let dir = std::env::temp_dir().join(format!("kube-elector-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "one\n").unwrap();
        let c = Credentials::TokenFile(Arc::new(TokenFile::open(&path).unwrap()));
        assert_eq!(&*c.resolve().unwrap().header.unwrap(), "Bearer one");
        std::fs::write(&path, "two").unwrap();
        assert_eq!(
            &*c.resolve().unwrap().header.unwrap(),
            "Bearer one",
            "cached for a minute"
        );
        assert!(c.invalidate(), "the file changed: a retry may help");
        assert_eq!(&*c.resolve().unwrap().header.unwrap(), "Bearer two");
        assert!(!c.invalidate(), "same token: retrying cannot help");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            &*c.resolve().unwrap().header.unwrap(),
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
            &*c.resolve().unwrap().header.unwrap(),
            "Basic YWxpY2U6czNjcmV0"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
