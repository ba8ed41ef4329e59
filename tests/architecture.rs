//! The house rules the compiler cannot check: the election core imports nothing from the transport
//! (the client, the locks, the crate's `Error`), and nothing outside the test rig uses the rig.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The first path segments that follow `crate::` in `text`: `crate::lock::Lock` gives `lock`,
/// `crate::{error::Error, Timing}` gives `error` and `Timing`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The top level of a group: split on commas outside nested braces.
            let (mut depth, mut item) = (0usize, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push(first_segment(&item));
        } else {
            found.push(first_segment(rest));
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Which of `names` the code in `text` names right after `crate::`, leaving out comments.
fn named(text: &str, names: &[&str]) -> Vec<String> {
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    crate_paths(&code.join("\n"))
        .into_iter()
        .filter(|s| names.contains(&s.as_str()))
        .collect()
}

/// Where `file` names one of `names` right after `crate::`.
fn uses(file: &Path, names: &[&str]) -> Vec<String> {
    named(&std::fs::read_to_string(file).unwrap(), names)
        .into_iter()
        .map(|s| format!("{}: crate::{s}", file.display()))
        .collect()
}

#[test]
fn the_election_core_imports_nothing_from_the_transport() {
    let election = src().join("election");
    let mut core = Vec::new();
    sources(&election.join("machine"), &mut core);
    for file in ["mod.rs", "protocol.rs", "failure.rs", "timing.rs"] {
        core.push(election.join(file));
    }
    // The scenario tests drive the core with an error type of their own, so they obey the rule too.
    assert!(core.len() >= 15, "the core's files moved: {core:?}");
    let found: Vec<String> = core
        .iter()
        .flat_map(|f| uses(f, &["error", "client", "lock", "Error", "Result"]))
        .collect();
    assert!(
        found.is_empty(),
        "the core reaches for the transport:\n{}",
        found.join("\n")
    );
}

#[test]
fn nothing_outside_the_test_rig_uses_it() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let rig = src().join("testing");
    let found: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&rig))
        .flat_map(|f| uses(f, &["testing"]))
        .collect();
    assert!(
        found.is_empty(),
        "library code uses the test rig:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checks_find_what_they_look_for() {
    let probe = "// use crate::client::X; (a comment)\nuse crate::error::Error;\nuse crate::{\n    Timing,\n    lock::{Lock, Locks},\n};\nuse crate::record::Record;\nfn f() -> crate::Result<()> { Ok(()) }\n";
    assert_eq!(
        named(probe, &["error", "client", "lock", "Result"]),
        ["error", "lock", "Result"]
    );
}
