//! The kubeconfig file format, as far as connecting needs it: clusters, users (tokens, certificates,
//! basic auth, impersonation, exec plugins, the removed auth providers) and contexts.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct KubeconfigFile {
    #[serde(rename = "current-context")]
    pub(super) current_context: Option<String>,
    pub(super) clusters: Option<Vec<Named<Cluster>>>,
    pub(super) users: Option<Vec<Named<User>>>,
    pub(super) contexts: Option<Vec<Named<Context>>>,
}

#[derive(Deserialize)]
pub(super) struct Named<T> {
    pub(super) name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    pub(super) item: Option<T>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct Cluster {
    pub(super) server: Option<String>,
    #[serde(rename = "certificate-authority")]
    pub(super) certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    pub(super) certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    pub(super) insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "tls-server-name")]
    pub(super) tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    pub(super) proxy_url: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct User {
    pub(super) token: Option<String>,
    #[serde(rename = "tokenFile")]
    pub(super) token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    pub(super) client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    pub(super) client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    pub(super) client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    pub(super) client_key_data: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    #[serde(rename = "as")]
    pub(super) impersonate: Option<String>,
    #[serde(rename = "as-groups")]
    pub(super) impersonate_groups: Option<Vec<String>>,
    #[serde(rename = "as-uid")]
    pub(super) impersonate_uid: Option<String>,
    #[serde(rename = "as-user-extra")]
    pub(super) impersonate_extra: Option<BTreeMap<String, Vec<String>>>,
    pub(super) exec: Option<Exec>,
    #[serde(rename = "auth-provider")]
    pub(super) auth_provider: Option<AuthProvider>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct Exec {
    #[serde(rename = "apiVersion")]
    pub(super) api_version: Option<String>,
    pub(super) command: Option<String>,
    pub(super) args: Option<Vec<String>>,
    pub(super) env: Option<Vec<ExecEnv>>,
    #[serde(rename = "installHint")]
    pub(super) install_hint: Option<String>,
    #[serde(rename = "provideClusterInfo")]
    pub(super) provide_cluster_info: Option<bool>,
    #[serde(rename = "interactiveMode")]
    pub(super) interactive_mode: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct ExecEnv {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct AuthProvider {
    pub(super) name: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct Context {
    pub(super) cluster: Option<String>,
    pub(super) user: Option<String>,
    pub(super) namespace: Option<String>,
}
