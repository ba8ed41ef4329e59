//! How to authenticate, as data: a bearer token, a token file, basic auth, or an exec credential plugin.
//! Reading token files again, running plugins and caching what they give live with the REST client
//! (`client::credentials`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{ConfigErrorKind, Error, Result};

/// The `ExecCredential` API versions a plugin may speak.
pub(crate) const EXEC_API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// Where the `Authorization` header (or an exec plugin's client certificate) comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No credentials (a client certificate may still be set on the config).
    #[default]
    None,
    /// A fixed bearer token.
    Token(String),
    /// A bearer token in a file that may be rewritten (bound service-account tokens, `tokenFile`).
    TokenFile(PathBuf),
    /// HTTP basic authentication.
    Basic { username: String, password: String },
    /// An exec credential plugin.
    Exec(ExecConfig),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::TokenFile(path) => write!(f, "TokenFile({})", path.display()),
            Auth::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Auth::Exec(e) => write!(f, "{e:?}"),
        }
    }
}

/// A plugin as configured in a kubeconfig `user.exec`. Its arguments and environment often carry secrets
/// (`--oidc-client-secret=…`), so `Debug` shows neither.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExecConfig {
    pub(crate) api_version: String,
    /// The command, resolved against the kubeconfig's folder when it contains a `/`.
    pub(crate) command: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) install_hint: Option<String>,
    /// `spec.cluster` for `KUBERNETES_EXEC_INFO` when `provideClusterInfo` is set, as JSON text.
    pub(crate) cluster: Option<String>,
}

impl fmt::Debug for ExecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecConfig")
            .field("command", &self.command)
            .field("args", &format_args!("<{} redacted>", self.args.len()))
            .field("env", &format_args!("{names:?} (values redacted)"))
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// The token in a bearer token file, trimmed: a missing, unreadable, oversized (over 1 MiB), special
/// (a FIFO, a device) or empty file is an error.
pub(crate) fn read_token(path: &Path) -> Result<String> {
    let text =
        super::files::read_bounded_text(path, super::files::MAX_TOKEN_FILE).map_err(|e| {
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
    fn debug_never_shows_secrets() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Auth::Token("t0ken".into()),
            Auth::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            },
            Auth::Exec(ExecConfig {
                api_version: EXEC_API_VERSIONS[0].into(),
                command: "plugin".into(),
                args: vec!["--client-secret=hush".into()],
                env: vec![("SECRET".into(), "quiet".into())],
                install_hint: None,
                cluster: None,
            })
        );
        for secret in ["t0ken", "s3cret", "hush", "quiet"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("SECRET"),
            "{shown}"
        );
    }
}
