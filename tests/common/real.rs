//! The real control plane for the real-server suite: one per test binary, started on first use from
//! `KUBEBUILDER_ASSETS`. Without assets the tests say so and pass; with
//! `KUBE_ELECTOR_REQUIRE_REAL_SERVER=1` (as CI sets it) a missing asset fails them instead.

use std::sync::OnceLock;

use kube_elector::testing::ControlPlane;

/// Whether the real-server tests run here; `false` after saying why they are skipped.
pub fn available() -> bool {
    let required = std::env::var_os("KUBE_ELECTOR_REQUIRE_REAL_SERVER").is_some();
    if ControlPlane::assets_from_env().is_none() && !required {
        eprintln!("skipped: KUBEBUILDER_ASSETS is not set (see README: the real-server suite)");
        return false;
    }
    true
}

/// The test binary's control plane (its processes die with the binary), or `None` when skipped.
pub fn control_plane() -> Option<&'static ControlPlane> {
    static CP: OnceLock<Option<ControlPlane>> = OnceLock::new();
    CP.get_or_init(|| available().then(|| ControlPlane::start().unwrap_or_else(|e| panic!("{e}"))))
        .as_ref()
}
