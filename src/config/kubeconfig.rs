//! kubeconfig files: the model, merging, path resolution and context selection, following kubectl and
//! client-go. This is the only module that parses YAML (serde_yaml is archived upstream; a swap to a fork
//! with the same API is a change here alone). JSON kubeconfigs parse as YAML.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, Impersonation};
use crate::error::{ConfigErrorKind, Error, Result};

/// Which kubeconfig files to read and which context to use.
///
/// ```no_run
/// use kube_elector::config::KubeconfigOptions;
/// let config = KubeconfigOptions::new()
///     .paths(["/etc/kube/base.yaml", "/home/me/.kube/config"])
///     .context("staging")
///     .load()?;
/// # Ok::<(), kube_elector::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct KubeconfigOptions {
    /// Files in merge order, with whether each must exist.
    files: Vec<(PathBuf, bool)>,
    context: Option<String>,
}

impl KubeconfigOptions {
    /// No files yet, the current context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The files in `KUBECONFIG`, else `~/.kube/config`.
    pub fn from_env() -> Self {
        match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(v) => Self::new().paths(std::env::split_paths(&v)),
            None => Self::new().paths(home_config()),
        }
    }

    /// Add a file that must exist.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push((path.into(), true));
        self
    }

    /// Add files as `KUBECONFIG` lists them: empty entries and missing files are skipped.
    pub fn paths<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.files.extend(
            paths
                .into_iter()
                .map(Into::into)
                .filter(|p: &PathBuf| !p.as_os_str().is_empty())
                .map(|p| (p, false)),
        );
        self
    }

    /// Use this context instead of `current-context`.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Read, merge and resolve.
    pub fn load(&self) -> Result<Config> {
        let mut merged = Merged::default();
        let mut seen = Vec::new();
        for (path, must_exist) in &self.files {
            if seen.contains(path) {
                continue;
            }
            seen.push(path.clone());
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::config_io(
                        ConfigErrorKind::Kubeconfig,
                        format!("reading kubeconfig {}", path.display()),
                        e,
                    ));
                }
            };
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            merged.add(
                parse(&text, &path.display().to_string())?,
                &path.display().to_string(),
                &dir,
            );
        }
        if merged.files.is_empty() {
            let list: Vec<String> = self
                .files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            return Err(Error::config(
                ConfigErrorKind::Kubeconfig,
                format!("no kubeconfig file found (looked for: {})", list.join(", ")),
            ));
        }
        merged.resolve(self.context.as_deref())
    }
}

/// `$HOME/.kube/config`.
pub(super) fn home_config() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".kube").join("config"))
}

pub(super) fn from_text(text: &str, base_dir: &Path, context: Option<&str>) -> Result<Config> {
    let mut merged = Merged::default();
    merged.add(
        parse(text, "<kubeconfig text>")?,
        "<kubeconfig text>",
        base_dir,
    );
    merged.resolve(context)
}

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

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
    #[serde(rename = "as-groups")]
    impersonate_groups: Option<Vec<String>>,
    #[serde(rename = "as-uid")]
    impersonate_uid: Option<String>,
    #[serde(rename = "as-user-extra")]
    impersonate_extra: Option<BTreeMap<String, Vec<String>>>,
    exec: Option<Exec>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<AuthProvider>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Exec {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<Vec<ExecEnv>>,
    #[serde(rename = "installHint")]
    install_hint: Option<String>,
    #[serde(rename = "provideClusterInfo")]
    provide_cluster_info: Option<bool>,
    #[serde(rename = "interactiveMode")]
    interactive_mode: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct ExecEnv {
    name: String,
    value: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct AuthProvider {
    name: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

fn parse(text: &str, file: &str) -> Result<KubeconfigFile> {
    if text.trim().is_empty() {
        return Ok(KubeconfigFile::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        Error::config(
            ConfigErrorKind::Kubeconfig,
            format!("kubeconfig {file} does not parse: {e}"),
        )
    })
}

/// An entry and the file that defined it (for messages and relative paths).
struct Origin<T> {
    item: T,
    file: String,
    dir: PathBuf,
}

#[derive(Default)]
struct Merged {
    files: Vec<String>,
    current_context: Option<(String, String)>,
    clusters: HashMap<String, Origin<Cluster>>,
    users: HashMap<String, Origin<User>>,
    contexts: HashMap<String, Origin<Context>>,
}

fn merge_into<T: Default>(
    map: &mut HashMap<String, Origin<T>>,
    list: Option<Vec<Named<T>>>,
    file: &str,
    dir: &Path,
) {
    for named in list.into_iter().flatten() {
        // The first file that defines a name wins, wholesale. An entry without a body reads as empty.
        map.entry(named.name).or_insert_with(|| Origin {
            item: named.item.unwrap_or_default(),
            file: file.to_string(),
            dir: dir.to_path_buf(),
        });
    }
}

impl Merged {
    fn add(&mut self, f: KubeconfigFile, file: &str, dir: &Path) {
        self.files.push(file.to_string());
        if self.current_context.is_none() {
            if let Some(c) = f.current_context.filter(|c| !c.is_empty()) {
                self.current_context = Some((c, file.to_string()));
            }
        }
        merge_into(&mut self.clusters, f.clusters, file, dir);
        merge_into(&mut self.users, f.users, file, dir);
        merge_into(&mut self.contexts, f.contexts, file, dir);
    }

    fn resolve(&self, context: Option<&str>) -> Result<Config> {
        let files = self.files.join(", ");
        let ctx_name = match context {
            Some(c) => c.to_string(),
            None => self.current_context.as_ref().map(|(c, _)| c.clone()).ok_or_else(|| {
                Error::config(ConfigErrorKind::Kubeconfig, format!(
                    "kubeconfig {files} has no current-context: set one (kubectl config use-context NAME) or name a context"
                ))
            })?,
        };
        let ctx = self.contexts.get(&ctx_name).ok_or_else(|| {
            let mut known: Vec<&String> = self.contexts.keys().collect();
            known.sort();
            Error::config(
                ConfigErrorKind::Kubeconfig,
                format!(
                    "kubeconfig {files}: context {ctx_name:?} not found (known contexts: {known:?})"
                ),
            )
        })?;
        let cluster_name = ctx.item.cluster.clone().unwrap_or_default();
        let cluster = self.clusters.get(&cluster_name).ok_or_else(|| {
            Error::config(ConfigErrorKind::Kubeconfig, format!(
                "kubeconfig {}: context {ctx_name:?} refers to cluster {cluster_name:?}, which is not defined",
                ctx.file
            ))
        })?;
        let mut config = cluster_config(cluster, &cluster_name)?;
        if let Some(user_name) = ctx.item.user.as_deref().filter(|u| !u.is_empty()) {
            let user = self.users.get(user_name).ok_or_else(|| {
                Error::config(ConfigErrorKind::Kubeconfig, format!(
                    "kubeconfig {}: context {ctx_name:?} refers to user {user_name:?}, which is not defined",
                    ctx.file
                ))
            })?;
            config = apply_user(config, user, user_name)?;
        }
        if let Some(ns) = ctx.item.namespace.as_deref().filter(|n| !n.is_empty()) {
            config = config.with_namespace(ns);
        }
        Ok(config)
    }
}

fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The bytes of a `X` / `X-data` pair: data beats path, both set is an error.
fn data_or_file(
    data: &Option<String>,
    path: &Option<String>,
    field: &str,
    owner: &str,
    origin_file: &str,
    dir: &Path,
) -> Result<Option<Vec<u8>>> {
    let data = data.as_deref().filter(|d| !d.trim().is_empty());
    let path = path.as_deref().filter(|p| !p.is_empty());
    match (data, path) {
        (Some(_), Some(_)) => Err(Error::config(
            ConfigErrorKind::Kubeconfig,
            format!(
                "kubeconfig {origin_file}: {owner} sets both {field} and {field}-data: keep one"
            ),
        )),
        (Some(d), None) => super::base64_decode(d).map(Some).map_err(|e| {
            Error::config(
                ConfigErrorKind::Kubeconfig,
                format!("kubeconfig {origin_file}: {owner}: {field}-data is not valid base64: {e}"),
            )
        }),
        (None, Some(p)) => {
            let p = resolve_path(dir, p);
            std::fs::read(&p).map(Some).map_err(|e| {
                Error::config_io(
                    ConfigErrorKind::Kubeconfig,
                    format!(
                        "kubeconfig {origin_file}: {owner}: reading {field} {}",
                        p.display()
                    ),
                    e,
                )
            })
        }
        (None, None) => Ok(None),
    }
}

fn cluster_config(o: &Origin<Cluster>, name: &str) -> Result<Config> {
    let c = &o.item;
    let owner = format!("cluster {name:?}");
    let server = c
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            Error::config(
                ConfigErrorKind::Kubeconfig,
                format!("kubeconfig {}: {owner} has no server", o.file),
            )
        })?;
    let mut config = Config::new(server);
    if let Some(ca) = data_or_file(
        &c.certificate_authority_data,
        &c.certificate_authority,
        "certificate-authority",
        &owner,
        &o.file,
        &o.dir,
    )? {
        super::certificates(
            &ca,
            &format!("kubeconfig {}: {owner}: certificate-authority", o.file),
        )?;
        config = config.with_ca_pem(ca);
    }
    if c.insecure_skip_tls_verify.unwrap_or(false) {
        if config.ca_pem().is_some() {
            return Err(Error::config(
                ConfigErrorKind::Kubeconfig,
                format!(
                    "kubeconfig {}: {owner} sets both a certificate-authority and insecure-skip-tls-verify: drop one",
                    o.file
                ),
            ));
        }
        config = config.with_insecure_skip_tls_verify(true);
    }
    if let Some(name) = c.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
        config = config.with_tls_server_name(name);
    }
    if let Some(proxy) = c.proxy_url.as_deref().filter(|p| !p.is_empty()) {
        super::proxy_url(proxy, &format!("kubeconfig {}: {owner}: proxy-url", o.file))?;
        config = config.with_proxy_url(proxy);
    }
    Ok(config)
}

fn apply_user(mut config: Config, o: &Origin<User>, name: &str) -> Result<Config> {
    let u = &o.item;
    let owner = format!("user {name:?}");
    let err = |m: String| {
        Err(Error::config(
            ConfigErrorKind::Kubeconfig,
            format!("kubeconfig {}: {owner} {m}", o.file),
        ))
    };
    let has_token = u.token.as_deref().is_some_and(|t| !t.is_empty())
        || u.token_file.as_deref().is_some_and(|t| !t.is_empty());
    let has_basic = u.username.as_deref().is_some_and(|x| !x.is_empty())
        || u.password.as_deref().is_some_and(|x| !x.is_empty());
    if has_token && has_basic {
        return err("sets both a token and username/password: keep one".into());
    }
    if let Some(tf) = u.token_file.as_deref().filter(|t| !t.is_empty()) {
        // The file wins over `token`, and is re-read as it rotates.
        config = config.with_token_file(resolve_path(&o.dir, tf))?;
    } else if let Some(t) = u.token.as_deref().filter(|t| !t.is_empty()) {
        config = config.with_token(t);
    } else if has_basic {
        config = config.with_basic_auth(
            u.username.as_deref().unwrap_or(""),
            u.password.as_deref().unwrap_or(""),
        );
    }
    let cert = data_or_file(
        &u.client_certificate_data,
        &u.client_certificate,
        "client-certificate",
        &owner,
        &o.file,
        &o.dir,
    )?;
    let key = data_or_file(
        &u.client_key_data,
        &u.client_key,
        "client-key",
        &owner,
        &o.file,
        &o.dir,
    )?;
    match (cert, key) {
        (Some(cert), Some(key)) => config = config.with_client_cert(cert, key),
        (Some(_), None) => return err("has a client-certificate but no client-key".into()),
        (None, Some(_)) => return err("has a client-key but no client-certificate".into()),
        (None, None) => {}
    }
    if let Some(user) = u.impersonate.as_deref().filter(|x| !x.is_empty()) {
        config = config.with_impersonation(Impersonation {
            user: user.to_string(),
            groups: u.impersonate_groups.clone().unwrap_or_default(),
            uid: u.impersonate_uid.clone().filter(|x| !x.is_empty()),
            extra: u.impersonate_extra.clone().unwrap_or_default(),
        });
    } else if u.impersonate_groups.as_ref().is_some_and(|g| !g.is_empty()) {
        return err("sets as-groups without as (a user to impersonate)".into());
    }
    // A plugin runs only when no static credential is set, as in client-go.
    let static_creds = has_token || has_basic || config.client_identity().is_some();
    if let Some(exec) = &u.exec {
        if !static_creds {
            let exec = exec_config(exec, &config, &o.dir).map_err(|m| {
                Error::config(
                    ConfigErrorKind::Kubeconfig,
                    format!("kubeconfig {}: {owner}: exec: {m}", o.file),
                )
            })?;
            config = config.with_exec(exec);
        }
    }
    if let Some(p) = &u.auth_provider {
        if !static_creds {
            return Err(Error::config(
                ConfigErrorKind::Kubeconfig,
                format!(
                    "kubeconfig {}: {owner}: {}",
                    o.file,
                    auth_provider_message(&p.name)
                ),
            ));
        }
    }
    Ok(config)
}

/// Check a `user.exec` block and resolve its command; errors name the field.
fn exec_config(
    e: &Exec,
    cluster: &Config,
    dir: &Path,
) -> std::result::Result<super::ExecConfig, String> {
    let api_version = e.api_version.clone().unwrap_or_default();
    if !super::auth::EXEC_API_VERSIONS.contains(&api_version.as_str()) {
        return Err(format!(
            "apiVersion {api_version:?} is not supported (use client.authentication.k8s.io/v1 or v1beta1)"
        ));
    }
    match e.interactive_mode.as_deref().unwrap_or("") {
        "Never" | "IfAvailable" => {}
        "" if api_version.ends_with("/v1beta1") => {}
        "" => {
            return Err(format!(
                "interactiveMode must be specified for {api_version} (Never or IfAvailable)"
            ));
        }
        "Always" => {
            return Err("interactiveMode is Always, but an elector runs without a terminal: use a plugin that can run non-interactively (Never or IfAvailable)".into());
        }
        other => {
            return Err(format!(
                "interactiveMode {other:?} is not one of Never, IfAvailable, Always"
            ));
        }
    }
    let command = e
        .command
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or("command is missing")?;
    // A command with a slash is a path, relative to the kubeconfig's folder; else it is looked up in PATH.
    let command = if command.contains('/') {
        resolve_path(dir, &command).display().to_string()
    } else {
        command
    };
    let cluster_info = e.provide_cluster_info.unwrap_or(false).then(|| {
        let mut c = serde_json::json!({
            "server": cluster.server(),
            "insecure-skip-tls-verify": cluster.insecure_skip_tls_verify(),
        });
        if let Some(ca) = cluster.ca_pem() {
            c["certificate-authority-data"] = serde_json::Value::String(super::base64::encode(ca));
        }
        c.to_string()
    });
    Ok(super::ExecConfig {
        api_version,
        command,
        args: e.args.clone().unwrap_or_default(),
        env: e
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
        install_hint: e.install_hint.clone().filter(|h| !h.trim().is_empty()),
        cluster: cluster_info,
    })
}

/// client-go's messages for the removed in-tree auth providers.
fn auth_provider_message(name: &str) -> String {
    match name {
        "gcp" => "The gcp auth plugin has been removed.\nPlease use the \"gke-gcloud-auth-plugin\" kubectl/client-go credential plugin instead.\nSee https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin for further details".into(),
        "azure" => "The azure auth plugin has been removed.\nPlease use the \"kubelogin\" kubectl/client-go credential plugin instead.\nSee https://azure.github.io/kubelogin/ for further details".into(),
        other => format!("no Auth Provider found for name {other:?}"),
    }
}
