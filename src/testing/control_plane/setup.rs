//! What a control plane starts with: its binaries and flags, certificates and tokens on disk, then the
//! namespace, the Role and its bindings, and a service account whose token is laid out as an in-cluster
//! mount.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::{ControlPlane, LaunchError, NAMESPACE, Tokens, err};
use crate::client::RestClient;

/// What `write` leaves for the caller.
pub(super) struct Pki {
    pub(super) ca_pem: String,
    pub(super) tokens: Tokens,
    pub(super) client_cert: (String, String),
}

/// A random token (hex) from the process's randomly keyed hasher.
fn token(label: &str) -> String {
    let mut rng = crate::random::Rng::new();
    format!("{label}-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

impl Pki {
    /// The CA and serving certificate, the service-account signing key, the token file, and a client
    /// certificate for the user `elector-cert`.
    pub(super) fn write(dir: &Path) -> Result<Pki, LaunchError> {
        let tls = crate::testing::tls::generate(false).map_err(err)?;
        let sa = rcgen::KeyPair::generate().map_err(err)?;
        let tokens = Tokens {
            admin: token("admin"),
            user: token("elector"),
            nobody: token("nobody"),
        };
        let csv = format!(
            "{},admin,uid-admin,\"system:masters\"\n{},elector-user,uid-elector\n{},nobody,uid-nobody\n",
            tokens.admin, tokens.user, tokens.nobody
        );
        for (name, text) in [
            ("ca.crt", tls.ca_pem.as_str()),
            ("server.crt", tls.server_cert_pem.as_str()),
            ("server.key", tls.server_key_pem.as_str()),
            ("sa.key", &sa.serialize_pem()),
            ("sa.pub", &sa.public_key_pem()),
            ("tokens.csv", &csv),
        ] {
            std::fs::write(dir.join(name), text).map_err(|e| err(format!("{name}: {e}")))?;
        }
        let client_cert = tls
            .issue_client_cert_in("elector-cert", &["elector-certs"], None)
            .map_err(err)?;
        Ok(Pki {
            ca_pem: tls.ca_pem.clone(),
            tokens,
            client_cert,
        })
    }
}

fn post(client: &RestClient, path: &str, body: &Value) -> Result<Value, LaunchError> {
    let bytes = serde_json::to_vec(body).map_err(err)?;
    match client.post(&path, &bytes, Duration::from_secs(10), &path) {
        Ok(answer) => serde_json::from_slice(&answer.body).map_err(err),
        Err(e) if e.is_already_exists() => Ok(Value::Null),
        Err(e) => Err(err(format!("setting up {path}: {e}"))),
    }
}

/// The namespace, the Role an elector needs (plus watch and list for watching followers), bound to the
/// token user, the certificate user and a service account, and that service account's token on disk.
pub(super) fn objects(cp: &ControlPlane) -> Result<(), LaunchError> {
    let client = RestClient::new(&cp.admin()).map_err(err)?;
    post(
        &client,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )?;
    let verbs = json!([
        "get", "list", "watch", "create", "update", "patch", "delete"
    ]);
    post(
        &client,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles"),
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "leader-election", "namespace": NAMESPACE},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases", "leasecandidates"], "verbs": verbs},
                {"apiGroups": [""], "resources": ["configmaps", "endpoints"], "verbs": verbs},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            ],
        }),
    )?;
    post(
        &client,
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "elector", "namespace": NAMESPACE}}),
    )?;
    post(
        &client,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings"),
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "leader-election", "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader-election"},
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "elector-user"},
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "elector-cert"},
                {"kind": "ServiceAccount", "name": "elector", "namespace": NAMESPACE},
            ],
        }),
    )?;
    let answer = post(
        &client,
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/elector/token"),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}}),
    )?;
    let sa_token = answer["status"]["token"].as_str().ok_or_else(|| {
        err(format!(
            "the TokenRequest answered without a token: {answer}"
        ))
    })?;
    let dir = &cp.service_account_dir;
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    for (name, text) in [
        ("token", sa_token),
        ("ca.crt", cp.ca_pem.as_str()),
        ("namespace", NAMESPACE),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| err(format!("{name}: {e}")))?;
    }
    Ok(())
}

/// A kubeconfig for `token` on `url`.
pub(super) fn kubeconfig(url: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: envtest\nclusters:\n- name: envtest\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: elector\n    namespace: {NAMESPACE}\nusers:\n- name: elector\n  user:\n    token: {token}\n",
        crate::config::base64_encode(ca_pem.as_bytes())
    )
}

/// `name` in the assets folder, or an error that says where it was looked for and how to unpack it.
pub(super) fn binary(assets: &Path, name: &str) -> Result<PathBuf, LaunchError> {
    let path = assets.join(name);
    if path.is_file() {
        return Ok(path);
    }
    Err(err(format!(
        "{name} not found (looked in KUBEBUILDER_ASSETS={}): unpack it there, e.g. `xz -dc kube-apiserver.xz > {}/kube-apiserver && chmod +x ...`",
        assets.display(),
        assets.display()
    )))
}

/// etcd on loopback, for one run.
pub(super) fn etcd_args(run: &str, data_dir: &Path, url: &str, peer_port: u16) -> Vec<String> {
    vec![
        format!("--name={run}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
        "--quota-backend-bytes=1073741824".into(),
        "--log-level=warn".into(),
    ]
}

/// kube-apiserver on loopback with the run's certificates and tokens, RBAC, and coordinated leader
/// election enabled.
pub(super) fn apiserver_args(dir: &Path, etcd_url: &str, port: u16) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", p("server.crt")),
        format!("--tls-private-key-file={}", p("server.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        format!("--token-auth-file={}", p("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        "--endpoint-reconciler-type=none".into(),
        "--feature-gates=CoordinatedLeaderElection=true".into(),
        "--runtime-config=coordination.k8s.io/v1beta1=true".into(),
    ]
}
