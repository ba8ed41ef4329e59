//! The name rule the embedded API server shares between object names and label keys.

/// A DNS-1123 subdomain: what the API server requires of most object names (and of a label key's
/// prefix): at most 253 characters, dot-separated labels of lowercase letters, digits and `-`, none
/// empty, none beginning or ending with `-`.
pub(crate) fn valid_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_subdomain;

    #[test]
    fn subdomains() {
        for ok in [
            "a",
            "my-app",
            "kube-elector.io",
            "a.b-c.d0",
            &"a".repeat(253),
        ] {
            assert!(valid_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", ".a", "a_b", &"a".repeat(254)] {
            assert!(!valid_subdomain(bad), "{bad}");
        }
    }
}
