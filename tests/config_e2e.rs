//! Connection config end to end over real TLS on loopback with the embedded API server: CA verification,
//! client certificates (PKCS#1, SEC1, PKCS#8 keys), a rotating token file, in-cluster files, kubeconfig.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::wait_until;
use kube_elector::config::InClusterOptions;
use kube_elector::election::Elector;
use kube_elector::lock::LeaseLock;
use kube_elector::testing::ApiServer;
use kube_elector::{Config, Error, Timing};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kube-elector-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Lease 10 s, renew deadline 5 s, retry 1 s: room for a step-by-step test.
fn timing() -> Timing {
    common::timing(10, 5000, 1000)
}

/// One election step with `config`: Ok(true) when it took the lease.
fn step(config: &Config, id: &str) -> kube_elector::Result<bool> {
    let lock = LeaseLock::new(config, "default", "cfg", id)?;
    Elector::new(lock, timing())?.try_acquire_or_renew()
}

fn key(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_server_is_verified_against_the_given_ca_only() {
    let server = common::tls_server(&["t"]);
    assert!(step(&server.config_for("t"), "a").unwrap());
    let other = ApiServer::builder().tls(true).start().unwrap();
    let wrong_ca = Config::new(server.url())
        .with_ca_pem(other.ca_pem().unwrap())
        .with_token("t");
    let err = step(&wrong_ca, "b").unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // No CA at all: the system roots do not include the test CA either.
    let err = step(&Config::new(server.url()).with_token("t"), "c").unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    // A wrong token is a 401 with a hint.
    let err = step(&server.config_for("wrong"), "d").unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(401));
    assert!(err.to_string().contains("check the bearer token"), "{err}");
}

#[test]
fn client_certificates_authenticate_with_every_key_format() {
    let server = common::tls_server(&["only-for-others"]);
    let ca = server.ca_pem().unwrap().to_string();
    let (cert, fresh_key) = server.issue_client_cert("alice", None).unwrap();
    let cases = [
        ("pkcs8 (generated)", cert, fresh_key),
        (
            "pkcs1",
            server
                .issue_client_cert("bob", Some(&key("rsa2048-pkcs8.pem")))
                .unwrap()
                .0,
            key("rsa2048-pkcs1.pem"),
        ),
        (
            "sec1",
            server
                .issue_client_cert("carol", Some(&key("ec-p256-pkcs8.pem")))
                .unwrap()
                .0,
            key("ec-p256-sec1.pem"),
        ),
    ];
    for (i, (what, cert, key)) in cases.into_iter().enumerate() {
        let config = Config::new(server.url())
            .with_ca_pem(ca.clone())
            .with_client_cert(cert, key);
        assert!(
            !format!("{config:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );
        let lock = LeaseLock::new(&config, "default", format!("cert-{i}"), what).unwrap();
        let mut e = Elector::new(lock, timing()).unwrap();
        assert!(
            e.try_acquire_or_renew().unwrap(),
            "{what}: authenticated by the certificate"
        );
    }
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            server.requests_for(user, "POST"),
            1,
            "{user} is known by its certificate"
        );
    }
    // A certificate from another CA is refused in the handshake.
    let stranger = ApiServer::builder().tls(true).start().unwrap();
    let (cert, key) = stranger.issue_client_cert("mallory", None).unwrap();
    let config = Config::new(server.url())
        .with_ca_pem(ca.clone())
        .with_client_cert(cert, key);
    assert!(step(&config, "m").is_err());
}

#[test]
fn keys_the_provider_cannot_use_are_errors_not_panics() {
    let server = ApiServer::builder().tls(true).start().unwrap();
    let (cert, _) = server.issue_client_cert("x", None).unwrap();
    for (name, needle) in [
        ("ec-p521-sec1.pem", "cannot use this key"),
        ("rsa1024-pkcs1.pem", "cannot use this key"),
    ] {
        let config = Config::new(server.url())
            .with_ca_pem(server.ca_pem().unwrap())
            .with_client_cert(cert.clone(), key(name));
        let err = LeaseLock::new(&config, "default", "k", "x").unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{name}: {err}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
    let config = Config::new(server.url())
        .with_ca_pem(server.ca_pem().unwrap())
        .with_client_cert(cert, "no key here");
    let err = LeaseLock::new(&config, "default", "k", "x").unwrap_err();
    assert!(err.to_string().contains("PKCS#1"), "{err}");
    let config = Config::new(server.url()).with_client_cert("not a cert", key("ec-p256-sec1.pem"));
    assert!(
        LeaseLock::new(&config, "default", "k", "x")
            .unwrap_err()
            .to_string()
            .contains("client certificate")
    );
}

#[test]
fn a_rotated_token_file_is_picked_up_while_leading() {
    let server = common::tls_server(&["old-token"]);
    let dir = temp_dir("rotate");
    let token = dir.join("token");
    std::fs::write(&token, "old-token\n").unwrap();
    let config = Config::new(server.url())
        .with_ca_pem(server.ca_pem().unwrap())
        .with_token_file(&token)
        .unwrap();
    let h = common::start(config, "rotating", "a", common::timing(3, 2000, 200));
    let events = h.events();
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    // The kubelet rotates the token; the API server stops accepting the old one.
    std::fs::write(&token, "new-token\n").unwrap();
    server.add_token("new-token");
    server.revoke_token("old-token");
    assert!(wait_until(Duration::from_secs(5), || server
        .requests_for("new-token", "PUT")
        >= 3));
    assert!(
        h.is_leader(),
        "the 401 was answered by re-reading the file, not by losing the lease"
    );
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, kube_elector::LeaderEvent::StoppedLeading { .. })),
        "no leadership change"
    );
    h.stop().unwrap();
    assert_eq!(
        server.lease_holder("default", "rotating").as_deref(),
        Some("")
    );
}

#[test]
fn in_cluster_files_and_a_kubeconfig_both_reach_the_server() {
    let server = common::tls_server(&["sa-token"]);
    let dir = temp_dir("incluster");
    std::fs::write(dir.join("token"), "sa-token").unwrap();
    std::fs::write(dir.join("ca.crt"), server.ca_pem().unwrap()).unwrap();
    std::fs::write(dir.join("namespace"), "kube-system").unwrap();
    let addr = server.addr();
    let config = Config::in_cluster_with(&InClusterOptions {
        service_account_dir: dir.clone(),
        host: Some(addr.ip().to_string()),
        port: Some(addr.port().to_string()),
        pod_namespace: None,
    })
    .unwrap();
    assert_eq!(config.namespace(), "kube-system");
    let h = common::start(config, "in-cluster", "pod-a", common::timing(3, 2000, 200));
    assert!(wait_until(Duration::from_secs(5), || h.is_leader()));
    assert_eq!(
        server.lease_holder("kube-system", "in-cluster").as_deref(),
        Some("pod-a"),
        "namespace from the pod"
    );
    h.stop().unwrap();

    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, server.kubeconfig()).unwrap();
    assert!(step(&Config::from_kubeconfig(&kc).unwrap(), "kc").unwrap());
}

/// A minimal HTTP CONNECT proxy on loopback that counts the tunnels it opened.
fn connect_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = std::sync::Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut client = client;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read_exact(&mut byte).is_ok() {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut parts = head.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                    return;
                };
                // Only loopback targets: this proxy must never reach anything else.
                assert!(target.starts_with("127.0.0.1:"), "{target}");
                let Ok(upstream) = TcpStream::connect(target) else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let mut upstream = upstream;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut upstream, &mut client);
            });
        }
    });
    (url, tunnels)
}

#[test]
fn a_kubeconfig_proxy_url_tunnels_requests_through_the_proxy() {
    let server = common::tls_server(&["t"]);
    let (proxy, tunnels) = connect_proxy();
    let dir = temp_dir("proxy");
    let kc = dir.join("kubeconfig");
    let text = server.kubeconfig().replace(
        &format!("    server: {}\n", server.url()),
        &format!("    server: {}\n    proxy-url: {proxy}\n", server.url()),
    );
    assert!(text.contains("proxy-url"), "{text}");
    std::fs::write(&kc, text).unwrap();
    let config = Config::from_kubeconfig(&kc).unwrap();
    let lock = LeaseLock::new(&config, "default", "proxied", "p").unwrap();
    let mut e = Elector::new(lock, timing()).unwrap();
    assert!(e.try_acquire_or_renew().unwrap());
    assert!(e.try_acquire_or_renew().unwrap());
    assert_eq!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one tunnel, reused by the renew"
    );

    // Without proxy-url, loopback servers are never proxied, whatever the environment says.
    assert!(step(&server.config_for("t"), "direct").is_ok());
    let err = Config::new(server.url())
        .with_proxy_url("ftp://nope:1")
        .with_token("t");
    assert!(
        LeaseLock::new(&err, "default", "x", "y")
            .unwrap_err()
            .to_string()
            .contains("ftp")
    );
}

#[test]
fn tls_server_name_is_the_name_verified() {
    let server = common::tls_server(&["t"]);
    // The certificate names kube-apiserver.test; the URL uses the IP.
    let named = server
        .config_for("t")
        .with_tls_server_name("kube-apiserver.test");
    assert!(step(&named, "sni").unwrap());
    let wrong = server.config_for("t").with_tls_server_name("wrong.example");
    let err = step(&wrong, "sni-wrong").unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // With a client certificate too, and through a kubeconfig.
    let (cert, key) = server.issue_client_cert("sni-user", None).unwrap();
    let with_cert = Config::new(server.url())
        .with_ca_pem(server.ca_pem().unwrap())
        .with_tls_server_name("kube-apiserver.test")
        .with_client_cert(cert, key);
    let lock = LeaseLock::new(&with_cert, "default", "sni-cert", "c").unwrap();
    assert!(
        Elector::new(lock, timing())
            .unwrap()
            .try_acquire_or_renew()
            .unwrap()
    );
    assert_eq!(server.requests_for("sni-user", "POST"), 1);
    let dir = temp_dir("sni");
    let text = server.kubeconfig().replace(
        &format!("    server: {}\n", server.url()),
        &format!(
            "    server: {}\n    tls-server-name: kube-apiserver.test\n",
            server.url()
        ),
    );
    std::fs::write(dir.join("config"), text).unwrap();
    let config = Config::from_kubeconfig(dir.join("config")).unwrap();
    assert_eq!(config.tls_server_name(), Some("kube-apiserver.test"));
    assert!(step(&config, "sni-kc").is_ok());
    let bad = server.config_for("t").with_tls_server_name("not a name!");
    assert!(
        LeaseLock::new(&bad, "default", "x", "y")
            .unwrap_err()
            .to_string()
            .contains("tls-server-name")
    );
}

#[test]
fn ipv6_address_servers_work_over_tls() {
    let server = ApiServer::builder()
        .tls(true)
        .ipv6(true)
        .token("t")
        .start()
        .unwrap();
    assert!(
        server.url().starts_with("https://[::1]:"),
        "{}",
        server.url()
    );
    assert!(step(&server.config_for("t"), "v6").unwrap());
    let dir = temp_dir("v6");
    std::fs::write(dir.join("config"), server.kubeconfig()).unwrap();
    assert!(
        step(
            &Config::from_kubeconfig(dir.join("config")).unwrap(),
            "v6-kc"
        )
        .is_ok()
    );
}

#[test]
fn a_dns_only_certificate_needs_tls_server_name() {
    let server = ApiServer::builder()
        .tls(true)
        .dns_san_only(true)
        .token("t")
        .start()
        .unwrap();
    let err = step(&server.config_for("t"), "ip").unwrap_err();
    assert!(
        matches!(err, Error::Transport { .. }),
        "the IP is not in the certificate: {err}"
    );
    assert!(
        step(
            &server
                .config_for("t")
                .with_tls_server_name("kube-apiserver.test"),
            "dns"
        )
        .unwrap()
    );
}

#[test]
fn insecure_skip_tls_verify_connects_without_a_ca() {
    let server = common::tls_server(&["t"]);
    let config = Config::new(server.url())
        .with_token("t")
        .with_insecure_skip_tls_verify(true);
    assert!(step(&config, "insecure").unwrap());
}

#[test]
fn basic_auth_and_impersonation_headers_reach_the_server() {
    let server = ApiServer::builder()
        .tls(true)
        .basic_auth("alice", "s3cret")
        .start()
        .unwrap();
    let dir = temp_dir("basic");
    let text = server.kubeconfig_for(None).replace(
        "  user: {}\n",
        "  user:\n    username: alice\n    password: s3cret\n    as: jane\n    as-groups: [devs, ops]\n    as-uid: u-7\n    as-user-extra: {scopes: [read]}\n",
    );
    assert!(text.contains("username: alice"), "{text}");
    std::fs::write(dir.join("config"), text).unwrap();
    let config = Config::from_kubeconfig(dir.join("config")).unwrap();
    assert!(step(&config, "basic").unwrap());
    assert_eq!(
        server.requests_for("alice", "POST"),
        1,
        "authenticated as alice"
    );
    let headers = server.last_impersonation();
    let has = |k: &str, v: &str| {
        headers
            .iter()
            .any(|(hk, hv)| hk.eq_ignore_ascii_case(k) && hv == v)
    };
    assert!(has("Impersonate-User", "jane"), "{headers:?}");
    assert!(
        has("Impersonate-Group", "devs") && has("Impersonate-Group", "ops"),
        "{headers:?}"
    );
    assert!(has("Impersonate-Uid", "u-7"), "{headers:?}");
    assert!(has("Impersonate-Extra-scopes", "read"), "{headers:?}");
    let wrong = Config::new(server.url())
        .with_ca_pem(server.ca_pem().unwrap())
        .with_basic_auth("alice", "nope");
    assert_eq!(
        step(&wrong, "basic-wrong")
            .unwrap_err()
            .api()
            .map(|e| e.code),
        Some(401)
    );
}

#[test]
fn a_server_path_prefix_is_kept_on_every_request() {
    let server = ApiServer::builder()
        .tls(true)
        .token("t")
        .path_prefix("/k8s/clusters/c-x")
        .start()
        .unwrap();
    assert!(
        server.url().ends_with("/k8s/clusters/c-x"),
        "{}",
        server.url()
    );
    let dir = temp_dir("prefix");
    std::fs::write(dir.join("config"), server.kubeconfig()).unwrap();
    let config = Config::from_kubeconfig(dir.join("config")).unwrap();
    let lock = LeaseLock::new(&config, "default", "prefixed", "p").unwrap();
    let mut e = Elector::new(lock, timing()).unwrap();
    assert!(
        e.try_acquire_or_renew().unwrap(),
        "GET, POST under the prefix"
    );
    assert!(e.try_acquire_or_renew().unwrap(), "PUT under the prefix");
    assert_eq!(
        server.lease_holder("default", "prefixed").as_deref(),
        Some("p")
    );
    // Without the prefix the server has nothing there.
    let bare = Config::new(server.url().trim_end_matches("/k8s/clusters/c-x"))
        .with_ca_pem(server.ca_pem().unwrap())
        .with_token("t");
    assert_eq!(
        step(&bare, "bare").unwrap_err().api().map(|e| e.code),
        Some(404)
    );
}

#[test]
fn config_errors_say_which_part_failed() {
    use kube_elector::config::KubeconfigOptions;
    use kube_elector::error::ConfigErrorKind as Kind;
    let dir = temp_dir("kinds");
    let kind = |r: kube_elector::Result<Config>| r.unwrap_err().config_kind();
    let lock_kind = |c: Config| {
        LeaseLock::new(&c, "default", "k", "x")
            .unwrap_err()
            .config_kind()
    };

    // A kubeconfig that does not parse, one that names a missing context, one that is missing.
    std::fs::write(dir.join("broken"), "clusters: [unclosed").unwrap();
    assert_eq!(
        kind(Config::from_kubeconfig(dir.join("broken"))),
        Some(Kind::Kubeconfig)
    );
    assert_eq!(
        kind(Config::from_kubeconfig(dir.join("absent"))),
        Some(Kind::Kubeconfig)
    );
    std::fs::write(
        dir.join("ok"),
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let unknown = KubeconfigOptions::new()
        .paths([dir.join("ok")])
        .context("nope")
        .load();
    assert_eq!(kind(unknown), Some(Kind::Kubeconfig));
    // In-cluster without the service account files.
    let options = InClusterOptions {
        service_account_dir: dir.join("no-such-dir"),
        host: Some("127.0.0.1".into()),
        port: Some("1".into()),
        pod_namespace: None,
    };
    assert_eq!(
        kind(Config::in_cluster_with(&options)),
        Some(Kind::InCluster)
    );
    // A token file that is not there.
    assert_eq!(
        kind(Config::new("https://127.0.0.1:1").with_token_file(dir.join("no-token"))),
        Some(Kind::Token)
    );
    // A server URL that is not one, and credentials over plain http.
    assert_eq!(
        lock_kind(Config::new("127.0.0.1:6443")),
        Some(Kind::ServerUrl)
    );
    assert_eq!(
        lock_kind(Config::new("http://127.0.0.1:1").with_token("t")),
        Some(Kind::ServerUrl)
    );
    // TLS material that is not PEM, and a proxy URL with an unknown scheme.
    assert_eq!(
        lock_kind(Config::new("https://127.0.0.1:1").with_ca_pem("not a certificate")),
        Some(Kind::Tls)
    );
    assert_eq!(
        lock_kind(Config::new("https://api.example:6443").with_proxy_url("gopher://proxy:70")),
        Some(Kind::Proxy)
    );
    // The message says which part, and the source chain keeps the file error.
    let err = Config::from_kubeconfig(dir.join("absent")).unwrap_err();
    assert!(err.to_string().contains("(kubeconfig)"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the config error is the source: {err}"
    );
}
