//! The rules a managed elector's settings must follow, checked before anything is built: its names,
//! and coordinated election's needs. The rules of timing and of the lock's record live where every
//! elector meets them, managed, on a custom lock or bare: the timing's in [`Timing`], the record's time
//! resolution in the blocking elector's constructor, identity in the election core.

use crate::election::{Defaulted, Timing};
use crate::error::{Error, Result};
use crate::lock::LockKind;
use crate::lock::valid_object_name;

/// The names an elector will use.
#[derive(Debug, Clone, Copy)]
pub(super) struct Names<'a> {
    pub(super) lock: &'a str,
    pub(super) namespace: &'a str,
    pub(super) identity: &'a str,
}

/// Every rule a managed elector's settings must follow, checked before anything is built.
pub(super) fn managed(
    timing: &Timing,
    defaulted: Defaulted,
    names: &Names<'_>,
    kind: LockKind,
    coordinated: bool,
) -> Result<()> {
    let Names {
        lock,
        namespace,
        identity,
    } = *names;
    timing.check_with(defaulted)?;
    let bad = |m: String| Err(Error::InvalidElectionConfig(m));
    if !valid_object_name(lock) {
        return bad(format!(
            "lock name {:?} is not a valid object name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (a DNS-1123 subdomain)",
            lock
        ));
    }
    if !valid_namespace(namespace) {
        return bad(format!(
            "namespace {namespace:?} is not a valid namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (a DNS-1123 label)"
        ));
    }
    if identity.is_empty() {
        return bad("identity must not be empty".into());
    }
    if coordinated {
        if kind != LockKind::Leases {
            return bad("coordinated leader election works on Leases only".into());
        }
        if !valid_object_name(identity) {
            return bad(format!(
                "coordinated election names the LeaseCandidate after the identity, so {identity:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.')"
            ));
        }
    }
    Ok(())
}

/// A namespace is a DNS-1123 label.
fn valid_namespace(ns: &str) -> bool {
    ns.len() <= 63 && valid_object_name(ns) && !ns.contains('.')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(
        names: Names<'_>,
        kind: LockKind,
        coordinated: bool,
    ) -> std::result::Result<(), String> {
        let timing = Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        managed(&timing, Defaulted::default(), &names, kind, coordinated).map_err(|e| e.to_string())
    }

    const OK: Names<'static> = Names {
        lock: "my-app",
        namespace: "default",
        identity: "pod_1",
    };

    #[test]
    fn each_rule_says_what_to_fix() {
        assert!(check(OK, LockKind::Leases, false).is_ok());
        let cases = [
            (
                Names {
                    lock: "My_App",
                    ..OK
                },
                LockKind::Leases,
                false,
                "lock name",
            ),
            (
                Names {
                    namespace: "a.b",
                    ..OK
                },
                LockKind::Leases,
                false,
                "namespace",
            ),
            (
                Names { identity: "", ..OK },
                LockKind::Leases,
                false,
                "identity",
            ),
            (OK, LockKind::ConfigMaps, true, "Leases only"),
            (OK, LockKind::Leases, true, "DNS subdomain"),
        ];
        for (names, kind, coordinated, needle) in cases {
            let err = check(names, kind, coordinated).unwrap_err();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let long = "a".repeat(64);
        assert!(
            check(
                Names {
                    namespace: &long,
                    ..OK
                },
                LockKind::Leases,
                false
            )
            .is_err()
        );
    }
}
