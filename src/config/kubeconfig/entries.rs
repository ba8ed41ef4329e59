//! Turning the chosen context's cluster and user entries into a [`Config`], with errors that name the
//! file, the entry and the field.

use std::path::Path;

use super::model::{Cluster, Exec, User};
use super::{Origin, data_or_file, resolve_path};
use crate::config::auth::EXEC_API_VERSIONS;
use crate::config::{Config, ExecConfig, Impersonation, base64_encode, certificates, proxy_url};
use crate::error::{ConfigErrorKind, Error, Result};

fn kubeconfig_error(message: String) -> Error {
    Error::config(ConfigErrorKind::Kubeconfig, message)
}

/// The server, how to trust it, and how to reach it.
pub(super) fn cluster_config(o: &Origin<Cluster>, name: &str) -> Result<Config> {
    let c = &o.item;
    let owner = format!("cluster {name:?}");
    let server = c
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| kubeconfig_error(format!("kubeconfig {}: {owner} has no server", o.file)))?;
    // A server without a scheme is `https://` (client-go reads `host:port` so too).
    let server = if server.contains("://") {
        server
    } else {
        format!("https://{}", server.trim())
    };
    let mut config = Config::new(server);
    let ca = data_or_file(
        &c.certificate_authority_data,
        &c.certificate_authority,
        "certificate-authority",
        &owner,
        &o.file,
        &o.dir,
    )?;
    if let Some(ca) = ca {
        let what = format!("kubeconfig {}: {owner}: certificate-authority", o.file);
        certificates(&ca, &what)?;
        config = config.with_ca_pem(ca);
    }
    if c.insecure_skip_tls_verify.unwrap_or(false) {
        if config.ca_pem().is_some() {
            return Err(kubeconfig_error(format!(
                "kubeconfig {}: {owner} sets both a certificate-authority and insecure-skip-tls-verify: drop one",
                o.file
            )));
        }
        config = config.with_insecure_skip_tls_verify(true);
    }
    if let Some(name) = c.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
        config = config.with_tls_server_name(name);
    }
    if let Some(proxy) = c.proxy_url.as_deref().filter(|p| !p.is_empty()) {
        proxy_url(proxy, &format!("kubeconfig {}: {owner}: proxy-url", o.file))?;
        config = config.with_proxy_url(proxy);
    }
    Ok(config)
}

/// A user entry on top of its cluster's config: credentials, a client certificate, impersonation, and
/// an exec plugin when no static credential is set (as in client-go).
pub(super) fn apply_user(config: Config, o: &Origin<User>, name: &str) -> Result<Config> {
    let owner = format!("user {name:?}");
    // `m` follows the owner: " sets …" or ": exec: …".
    let err = |m: &str| kubeconfig_error(format!("kubeconfig {}: {owner}{m}", o.file));
    let config = with_credentials(config, o, &err)?;
    let config = with_client_cert(config, o, &owner, &err)?;
    let config = with_impersonation(config, &o.item, &err)?;
    let u = &o.item;
    let static_creds = has_token(u) || has_basic(u) || config.client_identity().is_some();
    if static_creds {
        return Ok(config);
    }
    if let Some(p) = &u.auth_provider {
        return Err(err(&format!(": {}", auth_provider_message(&p.name))));
    }
    match &u.exec {
        Some(exec) => {
            let exec =
                exec_config(exec, &config, &o.dir).map_err(|m| err(&format!(": exec: {m}")))?;
            Ok(config.with_exec(exec))
        }
        None => Ok(config),
    }
}

fn has_token(u: &User) -> bool {
    u.token.as_deref().is_some_and(|t| !t.is_empty())
        || u.token_file.as_deref().is_some_and(|t| !t.is_empty())
}

fn has_basic(u: &User) -> bool {
    u.username.as_deref().is_some_and(|x| !x.is_empty())
        || u.password.as_deref().is_some_and(|x| !x.is_empty())
}

/// A token file (it wins over `token`, and is re-read as it rotates), a token, or basic auth.
fn with_credentials(
    config: Config,
    o: &Origin<User>,
    err: &dyn Fn(&str) -> Error,
) -> Result<Config> {
    let u = &o.item;
    if has_token(u) && has_basic(u) {
        return Err(err(" sets both a token and username/password: keep one"));
    }
    if let Some(tf) = u.token_file.as_deref().filter(|t| !t.is_empty()) {
        // The file and the user that named the token file, beside what went wrong with it.
        return config
            .with_token_file(resolve_path(&o.dir, tf))
            .map_err(|e| match e {
                Error::Config(c) => err(&format!(": tokenFile: {}", c.detail())),
                other => other,
            });
    }
    if let Some(t) = u.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(config.with_token(t));
    }
    if has_basic(u) {
        return Ok(config.with_basic_auth(
            u.username.as_deref().unwrap_or(""),
            u.password.as_deref().unwrap_or(""),
        ));
    }
    Ok(config)
}

fn with_client_cert(
    config: Config,
    o: &Origin<User>,
    owner: &str,
    err: &dyn Fn(&str) -> Error,
) -> Result<Config> {
    let u = &o.item;
    let read = |data: &Option<String>, path: &Option<String>, field: &str| {
        data_or_file(data, path, field, owner, &o.file, &o.dir)
    };
    let cert = read(
        &u.client_certificate_data,
        &u.client_certificate,
        "client-certificate",
    )?;
    let key = read(&u.client_key_data, &u.client_key, "client-key")?;
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(config.with_client_cert(cert, key)),
        (Some(_), None) => Err(err(" has a client-certificate but no client-key")),
        (None, Some(_)) => Err(err(" has a client-key but no client-certificate")),
        (None, None) => Ok(config),
    }
}

fn with_impersonation(config: Config, u: &User, err: &dyn Fn(&str) -> Error) -> Result<Config> {
    match u.impersonate.as_deref().filter(|x| !x.is_empty()) {
        Some(user) => Ok(config.with_impersonation(Impersonation {
            user: user.to_string(),
            groups: u.impersonate_groups.clone().unwrap_or_default(),
            uid: u.impersonate_uid.clone().filter(|x| !x.is_empty()),
            extra: u.impersonate_extra.clone().unwrap_or_default(),
        })),
        None if u.impersonate_groups.as_ref().is_some_and(|g| !g.is_empty()) => {
            Err(err(" sets as-groups without as (a user to impersonate)"))
        }
        None => Ok(config),
    }
}

/// Check a `user.exec` block and resolve its command; errors name the field.
fn exec_config(e: &Exec, cluster: &Config, dir: &Path) -> std::result::Result<ExecConfig, String> {
    let api_version = e.api_version.clone().unwrap_or_default();
    if !EXEC_API_VERSIONS.contains(&api_version.as_str()) {
        return Err(format!(
            "apiVersion {api_version:?} is not supported (use client.authentication.k8s.io/v1 or v1beta1)"
        ));
    }
    check_interactive_mode(e.interactive_mode.as_deref().unwrap_or(""), &api_version)?;
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
    let cluster_info = e
        .provide_cluster_info
        .unwrap_or(false)
        .then(|| cluster_info(cluster));
    Ok(ExecConfig {
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

/// An elector runs without a terminal: only plugins that can run non-interactively will do.
fn check_interactive_mode(mode: &str, api_version: &str) -> std::result::Result<(), String> {
    match mode {
        "Never" | "IfAvailable" => Ok(()),
        "" if api_version.ends_with("/v1beta1") => Ok(()),
        "" => Err(format!(
            "interactiveMode must be specified for {api_version} (Never or IfAvailable)"
        )),
        "Always" => Err("interactiveMode is Always, but an elector runs without a terminal: use a plugin that can run non-interactively (Never or IfAvailable)".into()),
        other => Err(format!(
            "interactiveMode {other:?} is not one of Never, IfAvailable, Always"
        )),
    }
}

/// `spec.cluster` for `KUBERNETES_EXEC_INFO` (`provideClusterInfo`), as JSON text.
fn cluster_info(cluster: &Config) -> String {
    let mut c = serde_json::json!({
        "server": cluster.server(),
        "insecure-skip-tls-verify": cluster.insecure_skip_tls_verify(),
    });
    if let Some(ca) = cluster.ca_pem() {
        c["certificate-authority-data"] = serde_json::Value::String(base64_encode(ca));
    }
    c.to_string()
}

/// client-go's messages for the removed in-tree auth providers.
fn auth_provider_message(name: &str) -> String {
    match name {
        "gcp" => "The gcp auth plugin has been removed.\nPlease use the \"gke-gcloud-auth-plugin\" kubectl/client-go credential plugin instead.\nSee https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin for further details".into(),
        "azure" => "The azure auth plugin has been removed.\nPlease use the \"kubelogin\" kubectl/client-go credential plugin instead.\nSee https://azure.github.io/kubelogin/ for further details".into(),
        other => format!("no Auth Provider found for name {other:?}"),
    }
}
