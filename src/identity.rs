//! The default candidate identity: `<hostname>_<random hex>`, unique per process as Kubernetes requires.

use crate::random::Rng;

/// This machine's hostname (the pod name in Kubernetes), or `localhost` when it cannot be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A fresh default identity.
pub fn default_identity() -> String {
    let mut rng = Rng::new();
    format!("{}_{:016x}", hostname(), rng.next_u64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn identities_are_unique_and_start_with_the_hostname() {
        let a = super::default_identity();
        let b = super::default_identity();
        assert_ne!(a, b);
        assert!(a.starts_with(&super::hostname()));
        assert_eq!(a.rsplit('_').next().unwrap().len(), 16);
    }
}
