//! kubeconfig and in-cluster loading: table tests over files written to a temporary folder. Every bad
//! input must be an error that names the culprit, and nothing may panic.

use std::path::{Path, PathBuf};

mod common;

use kube_elector::Config;
use kube_elector::config::{InClusterOptions, KubeconfigOptions};

/// base64 with a line break in the middle, as some tools write it.
fn b64(data: &str) -> String {
    let out = common::b64(data);
    let mid = out.len() / 2 / 4 * 4;
    format!("{}\n{}", &out[..mid], &out[mid..])
}

/// A fresh temporary folder for one test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kube-elector-kc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

const CA: &str = include_str!("fixtures/ca.pem");

fn kubeconfig(cluster: &str, user: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n{extra}\nclusters:\n- name: c1\n  cluster:\n{cluster}\ncontexts:\n- name: dev\n  context: {{cluster: c1, user: u1, namespace: team-a}}\nusers:\n- name: u1\n  user:\n{user}\n"
    )
}

fn indent(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("    {f}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[test]
fn bad_kubeconfigs_are_errors_that_name_the_culprit() {
    let dir = temp_dir("bad");
    write(&dir, "ca.pem", CA);
    write(&dir, "not-a-cert.pem", "hello");
    let server = "server: https://127.0.0.1:6443";
    let ca_data = format!("certificate-authority-data: {}", b64(CA).replace('\n', ""));
    let cases: Vec<(&str, String, Option<&str>, Vec<&str>)> = vec![
        (
            "yaml error",
            "clusters: [\n  - {".to_string(),
            None,
            vec!["does not parse"],
        ),
        (
            "unknown context",
            kubeconfig(&indent(&[server]), &indent(&["token: t"]), ""),
            Some("nope"),
            vec!["\"nope\" not found", "dev"],
        ),
        (
            "missing cluster",
            kubeconfig(&indent(&[server]), &indent(&["token: t"]), "")
                .replace("cluster: c1, user", "cluster: c9, user"),
            None,
            vec!["cluster \"c9\"", "not defined"],
        ),
        (
            "missing user",
            kubeconfig(&indent(&[server]), &indent(&["token: t"]), "")
                .replace("user: u1, namespace", "user: u9, namespace"),
            None,
            vec!["user \"u9\"", "not defined"],
        ),
        (
            "no server",
            kubeconfig(
                &indent(&["insecure-skip-tls-verify: false"]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["cluster \"c1\" has no server"],
        ),
        (
            "bad base64",
            kubeconfig(
                &indent(&[server, "certificate-authority-data: not*base64"]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["cluster \"c1\"", "certificate-authority-data", "base64"],
        ),
        (
            "bad PEM",
            kubeconfig(
                &indent(&[server, "certificate-authority: not-a-cert.pem"]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["certificate-authority", "PEM"],
        ),
        (
            "missing CA file",
            kubeconfig(
                &indent(&[server, "certificate-authority: nowhere/ca.pem"]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["nowhere/ca.pem"],
        ),
        (
            "data and path",
            kubeconfig(
                &indent(&[server, &ca_data, "certificate-authority: ca.pem"]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["both certificate-authority and certificate-authority-data"],
        ),
        (
            "CA plus insecure",
            kubeconfig(
                &indent(&[
                    server,
                    "certificate-authority: ca.pem",
                    "insecure-skip-tls-verify: true",
                ]),
                &indent(&["token: t"]),
                "",
            ),
            None,
            vec!["cluster \"c1\"", "insecure-skip-tls-verify"],
        ),
        (
            "cert without key",
            kubeconfig(
                &indent(&[server]),
                &indent(&["client-certificate: ca.pem"]),
                "",
            ),
            None,
            vec!["user \"u1\"", "client-certificate but no client-key"],
        ),
        (
            "key without cert",
            kubeconfig(&indent(&[server]), &indent(&["client-key: ca.pem"]), ""),
            None,
            vec!["user \"u1\"", "client-key but no client-certificate"],
        ),
        (
            "token plus basic auth",
            kubeconfig(
                &indent(&[server]),
                &indent(&["token: t", "username: a", "password: b"]),
                "",
            ),
            None,
            vec!["user \"u1\"", "both a token and username/password"],
        ),
        (
            "missing token file",
            kubeconfig(
                &indent(&[server]),
                &indent(&["tokenFile: secrets/token"]),
                "",
            ),
            None,
            vec!["secrets/token"],
        ),
        (
            "gcp auth provider",
            kubeconfig(
                &indent(&[server]),
                &indent(&["auth-provider: {name: gcp}"]),
                "",
            ),
            None,
            vec!["gke-gcloud-auth-plugin"],
        ),
        (
            "azure auth provider",
            kubeconfig(
                &indent(&[server]),
                &indent(&["auth-provider: {name: azure}"]),
                "",
            ),
            None,
            vec!["kubelogin"],
        ),
        (
            "exec without interactiveMode",
            kubeconfig(
                &indent(&[server]),
                &indent(&["exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}"]),
                "",
            ),
            None,
            vec!["user \"u1\"", "interactiveMode must be specified"],
        ),
        (
            "exec interactive",
            kubeconfig(
                &indent(&[server]),
                &indent(&[
                    "exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, interactiveMode: Always}",
                ]),
                "",
            ),
            None,
            vec!["user \"u1\"", "interactiveMode is Always"],
        ),
        (
            "exec old apiVersion",
            kubeconfig(
                &indent(&[server]),
                &indent(&[
                    "exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: aws}",
                ]),
                "",
            ),
            None,
            vec!["user \"u1\"", "v1alpha1", "not supported"],
        ),
        (
            "exec without command",
            kubeconfig(
                &indent(&[server]),
                &indent(&["exec: {apiVersion: client.authentication.k8s.io/v1beta1}"]),
                "",
            ),
            None,
            vec!["command is missing"],
        ),
        (
            "no current context",
            "apiVersion: v1\nclusters: []\n".to_string(),
            None,
            vec!["no current-context"],
        ),
        (
            "groups without user",
            kubeconfig(
                &indent(&[server]),
                &indent(&["token: t", "as-groups: [admins]"]),
                "",
            ),
            None,
            vec!["as-groups"],
        ),
    ];
    for (name, text, context, needles) in cases {
        let path = write(&dir, &format!("{}.yaml", name.replace(' ', "-")), &text);
        let mut options = KubeconfigOptions::new().path(&path);
        if let Some(c) = context {
            options = options.context(c);
        }
        let err = match options.load() {
            Ok(c) => panic!("{name}: expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            assert!(
                err.contains(needle),
                "{name}: {err:?} should contain {needle:?}"
            );
        }
        if !name.contains("auth provider") {
            assert!(
                err.contains(&path.display().to_string())
                    || err.contains("nowhere")
                    || err.contains("secrets/token"),
                "{name}: the error names the file: {err}"
            );
        }
    }
    let missing = dir.join("does-not-exist.yaml");
    let err = Config::from_kubeconfig(&missing).unwrap_err().to_string();
    assert!(err.contains("does-not-exist.yaml"), "{err}");
}

#[test]
fn a_good_kubeconfig_gives_server_ca_token_and_namespace() {
    let dir = temp_dir("good");
    write(&dir, "certs/ca.pem", CA);
    write(&dir, "secrets/token", "file-token\n");
    let text = kubeconfig(
        &indent(&[
            "server: https://rancher.example:443/k8s/clusters/c-x/",
            "certificate-authority: certs/ca.pem",
            "extra-field: ignored",
        ]),
        &indent(&[
            "token: inline-token",
            "tokenFile: secrets/token",
            "as: jane",
            "as-groups: [devs, ops]",
            "as-uid: u-1",
            "as-user-extra: {scopes: [a, b]}",
        ]),
        "preferences: {}\nextensions: null",
    );
    let path = write(&dir, "config", &text);
    let c = Config::from_kubeconfig(&path).unwrap();
    assert_eq!(
        c.server(),
        "https://rancher.example:443/k8s/clusters/c-x",
        "the path prefix is kept"
    );
    assert_eq!(c.namespace(), "team-a");
    assert_eq!(
        c.ca_pem(),
        Some(CA.as_bytes()),
        "relative to the kubeconfig's folder"
    );
    let debug = format!("{c:?}");
    assert!(
        debug.contains("secrets/token"),
        "tokenFile wins over token: {debug}"
    );
    assert!(
        !debug.contains("inline-token") && !debug.contains("file-token"),
        "{debug}"
    );
    let imp = c.impersonation().unwrap();
    assert_eq!(imp.user, "jane");
    assert_eq!(imp.groups, ["devs", "ops"]);
    assert_eq!(imp.uid.as_deref(), Some("u-1"));
    assert_eq!(imp.extra["scopes"], ["a", "b"]);

    // The data form, base64 with a line break, and no namespace: `default`.
    let text = format!(
        "current-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://[::1]:6443\n    certificate-authority-data: |\n      {}\ncontexts:\n- name: x\n  context: {{cluster: c}}\nusers: null\n",
        b64(CA).replace('\n', "\n      ")
    );
    let c = Config::from_kubeconfig(write(&dir, "data.yaml", &text)).unwrap();
    assert_eq!(c.ca_pem(), Some(CA.as_bytes()));
    assert_eq!(c.namespace(), "default");
    assert_eq!(c.server(), "https://[::1]:6443");
}

#[test]
fn json_kubeconfigs_and_null_lists_parse() {
    let dir = temp_dir("json");
    let text = r#"{"apiVersion":"v1","kind":"Config","current-context":"j","preferences":{},
        "clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:6443","insecure-skip-tls-verify":true}}],
        "contexts":[{"name":"j","context":{"cluster":"c","user":"u","namespace":"json-ns"}}],
        "users":[{"name":"u","user":{"username":"alice","password":"pw"}}]}"#;
    let c = Config::from_kubeconfig(write(&dir, "config.json", text)).unwrap();
    assert_eq!(c.namespace(), "json-ns");
    assert!(c.insecure_skip_tls_verify());
    assert!(!format!("{c:?}").contains("pw\""));
}

#[test]
fn kubeconfig_lists_merge_first_wins_and_skip_missing_files() {
    let dir = temp_dir("merge");
    write(&dir, "a/ca.pem", CA);
    write(&dir, "b/token", "b-token");
    // a: the current context and cluster c (relative CA path, resolved against a/).
    let a = write(
        &dir,
        "a/config",
        "current-context: ctx\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1111', certificate-authority: ca.pem}\n",
    );
    // b: its own current-context (ignored), c again (ignored), the context and the user (resolved against b/).
    let b = write(
        &dir,
        "b/config",
        "current-context: other\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:2222'}\ncontexts:\n- name: ctx\n  context: {cluster: c, user: u, namespace: merged}\n- name: other\n  context: {cluster: c}\nusers:\n- name: u\n  user: {tokenFile: token}\n",
    );
    let missing = dir.join("missing/config");
    let c = KubeconfigOptions::new()
        .paths([
            a.clone(),
            PathBuf::new(),
            missing.clone(),
            b.clone(),
            a.clone(),
        ])
        .load()
        .unwrap();
    assert_eq!(
        c.server(),
        "https://127.0.0.1:1111",
        "the first definition of a cluster wins"
    );
    assert_eq!(c.ca_pem(), Some(CA.as_bytes()));
    assert_eq!(c.namespace(), "merged");
    assert!(format!("{c:?}").contains("b/token"));
    // An explicit context from the second file.
    let c = KubeconfigOptions::new()
        .paths([a.clone(), b.clone()])
        .context("other")
        .load()
        .unwrap();
    assert_eq!(c.namespace(), "default");
    // Nothing found at all.
    let err = KubeconfigOptions::new()
        .paths([missing.clone()])
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing/config"), "{err}");
    // A listed file that exists but does not parse is an error, not skipped.
    let broken = write(&dir, "broken", "{{{{");
    let err = KubeconfigOptions::new()
        .paths([a, broken.clone()])
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken"), "{err}");
}

fn in_cluster_dir(tag: &str, ca: &str) -> PathBuf {
    let dir = temp_dir(tag);
    write(&dir, "token", "sa-token\n");
    write(&dir, "ca.crt", ca);
    write(&dir, "namespace", "from-file\n");
    dir
}

fn options(dir: &Path, host: &str) -> InClusterOptions {
    InClusterOptions {
        service_account_dir: dir.to_path_buf(),
        host: Some(host.into()),
        port: Some("443".into()),
        pod_namespace: None,
    }
}

#[test]
fn in_cluster_config_from_files_and_env() {
    let dir = in_cluster_dir("incluster", CA);
    let c = Config::in_cluster_with(&options(&dir, "10.96.0.1")).unwrap();
    assert_eq!(c.server(), "https://10.96.0.1:443");
    assert_eq!(c.namespace(), "from-file");
    assert_eq!(c.ca_pem(), Some(CA.as_bytes()));
    assert!(!format!("{c:?}").contains("sa-token"));

    let c = Config::in_cluster_with(&options(&dir, "fd00:10:96::1")).unwrap();
    assert_eq!(
        c.server(),
        "https://[fd00:10:96::1]:443",
        "IPv6 hosts are bracketed"
    );

    let mut o = options(&dir, "10.96.0.1");
    o.pod_namespace = Some("from-env".into());
    assert_eq!(
        Config::in_cluster_with(&o).unwrap().namespace(),
        "from-env",
        "POD_NAMESPACE wins"
    );

    std::fs::remove_file(dir.join("namespace")).unwrap();
    assert_eq!(
        Config::in_cluster_with(&options(&dir, "10.96.0.1"))
            .unwrap()
            .namespace(),
        "default"
    );
}

#[test]
fn in_cluster_errors_name_what_is_missing() {
    let dir = in_cluster_dir("incluster-bad", "not a certificate");
    let err = Config::in_cluster_with(&options(&dir, "10.96.0.1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt") && err.contains("PEM"), "{err}");

    let mut o = options(&dir, "10.96.0.1");
    o.host = None;
    let err = Config::in_cluster_with(&o).unwrap_err().to_string();
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");

    std::fs::remove_file(dir.join("token")).unwrap();
    let err = Config::in_cluster_with(&options(&dir, "10.96.0.1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token") && err.contains(&dir.display().to_string()),
        "{err}"
    );

    write(&dir, "token", "t");
    std::fs::remove_file(dir.join("ca.crt")).unwrap();
    let err = Config::in_cluster_with(&options(&dir, "10.96.0.1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");
}
