//! The kubeconfig file model: the only module that parses YAML (serde_yaml is archived upstream; a swap to a
//! fork with the same API is a change here alone).
//!
//! This reads one file's chosen context: cluster `server`, `certificate-authority(-data)`,
//! `insecure-skip-tls-verify`; user `token`/`tokenFile`; context `namespace`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Config;
use crate::error::{Error, Result};

#[derive(Deserialize, Default)]
#[serde(default)]
struct KubeconfigFile {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    clusters: Option<Vec<Named<Cluster>>>,
    users: Option<Vec<Named<User>>>,
    contexts: Option<Vec<Named<Context>>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

pub(super) fn load(path: &Path, context: Option<&str>) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        context: format!("reading kubeconfig {}", path.display()),
        source: e,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, &path.display().to_string(), dir, context)
}

fn find<'a, T>(list: &'a Option<Vec<Named<T>>>, name: &str) -> Option<&'a Named<T>> {
    list.iter().flatten().find(|n| n.name == name)
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

pub(super) fn parse(text: &str, file: &str, dir: &Path, context: Option<&str>) -> Result<Config> {
    let kc: KubeconfigFile = serde_yaml::from_str(text)
        .map_err(|e| Error::Config(format!("kubeconfig {file} does not parse: {e}")))?;
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => kc.current_context.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
            Error::Config(format!(
                "kubeconfig {file} has no current-context: set one (kubectl config use-context) or name a context"
            ))
        })?,
    };
    let ctx = find(&kc.contexts, &ctx_name).ok_or_else(|| {
        Error::Config(format!("kubeconfig {file}: context {ctx_name:?} not found"))
    })?;
    let ctx = ctx.item.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "kubeconfig {file}: context {ctx_name:?} has no body"
        ))
    })?;
    let cluster_name = ctx.cluster.clone().unwrap_or_default();
    let cluster = find(&kc.clusters, &cluster_name)
        .and_then(|c| c.item.as_ref())
        .ok_or_else(|| {
            Error::Config(format!(
                "kubeconfig {file}: context {ctx_name:?} refers to cluster {cluster_name:?}, which is not defined"
            ))
        })?;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "kubeconfig {file}: cluster {cluster_name:?} has no server"
            ))
        })?;
    let mut config = Config::new(server);
    match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "kubeconfig {file}: cluster {cluster_name:?} sets both certificate-authority and certificate-authority-data: keep one"
            )));
        }
        (Some(data), None) => {
            let pem = super::base64_decode(data).map_err(|e| {
                Error::Config(format!(
                    "kubeconfig {file}: cluster {cluster_name:?}: certificate-authority-data is not valid base64: {e}"
                ))
            })?;
            config = config.with_ca_pem(pem);
        }
        (None, Some(path)) => {
            let path = resolve(dir, path);
            let pem = std::fs::read(&path).map_err(|e| Error::Io {
                context: format!(
                    "kubeconfig {file}: cluster {cluster_name:?}: reading certificate-authority {}",
                    path.display()
                ),
                source: e,
            })?;
            config = config.with_ca_pem(pem);
        }
        (None, None) => {}
    }
    config =
        config.with_insecure_skip_tls_verify(cluster.insecure_skip_tls_verify.unwrap_or(false));
    if let Some(user_name) = ctx.user.as_deref().filter(|u| !u.is_empty()) {
        let user = find(&kc.users, user_name).and_then(|u| u.item.as_ref()).ok_or_else(|| {
            Error::Config(format!(
                "kubeconfig {file}: context {ctx_name:?} refers to user {user_name:?}, which is not defined"
            ))
        })?;
        if let Some(tf) = user.token_file.as_deref().filter(|t| !t.is_empty()) {
            let path = resolve(dir, tf);
            let token = std::fs::read_to_string(&path).map_err(|e| Error::Io {
                context: format!(
                    "kubeconfig {file}: user {user_name:?}: reading tokenFile {}",
                    path.display()
                ),
                source: e,
            })?;
            config = config.with_token(token);
        } else if let Some(token) = user.token.as_deref().filter(|t| !t.is_empty()) {
            config = config.with_token(token);
        }
    }
    if let Some(ns) = ctx.namespace.as_deref().filter(|n| !n.is_empty()) {
        config = config.with_namespace(ns);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/prefix
    certificate-authority-data: LS0tLS1CRUdJTg==
    extra-field: ignored
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: team-a}
- name: other
  context: {cluster: missing, user: u1}
users:
- name: u1
  user: {token: secret-token}
preferences: {}
"#;

    #[test]
    fn reads_current_context() {
        let c = parse(GOOD, "f", Path::new("/"), None).unwrap();
        assert_eq!(c.server(), "https://127.0.0.1:6443/prefix");
        assert_eq!(c.namespace(), "team-a");
        assert_eq!(c.token(), Some("secret-token"));
        assert_eq!(c.ca_pem(), Some(&b"-----BEGIN"[..]));
    }

    #[test]
    fn errors_name_the_culprit() {
        let e = parse(GOOD, "f", Path::new("/"), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nope\" not found"), "{e}");
        let e = parse(GOOD, "f", Path::new("/"), Some("other"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster \"missing\""), "{e}");
        let e = parse("clusters: [", "myfile", Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("myfile") && e.contains("does not parse"), "{e}");
        let bad = GOOD.replace("LS0tLS1CRUdJTg==", "not-base64!");
        let e = parse(&bad, "f", Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate-authority-data"), "{e}");
        let e = parse("{}", "f", Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no current-context"), "{e}");
    }

    #[test]
    fn null_lists_are_empty() {
        let e = parse(
            "current-context: x\nclusters: null\nusers: null\ncontexts: null\n",
            "f",
            Path::new("/"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("context \"x\" not found"), "{e}");
    }
}
