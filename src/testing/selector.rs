//! Label and field selectors, as the API server reads them on a list or a watch: `labelSelector` with
//! equality (`k=v`, `k==v`, `k!=v`), set (`k in (a,b)`, `k notin (a)`) and existence (`k`, `!k`)
//! requirements, all of which must hold; `fieldSelector` with `metadata.name` and `metadata.namespace`
//! (`=`, `==`, `!=`), the fields every kind supports. A selector the server could not parse is refused
//! with `400 BadRequest`, as the real one does.

use serde_json::Value;

use super::names::valid_subdomain;

/// What one label must satisfy.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Requirement {
    fn holds(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            // As in Kubernetes: a missing label is "not equal" and "not in".
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
        }
    }
}

/// A field requirement: the field, whether it must equal (or differ from) the value, the value.
#[derive(Debug, Clone, PartialEq)]
struct FieldRequirement {
    field: Field,
    equal: bool,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Name,
    Namespace,
}

/// The objects a list or a watch asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<FieldRequirement>,
}

impl Selector {
    /// Parse the `labelSelector` and `fieldSelector` parameters (decoded); `Err` says what is wrong, in
    /// the words the API server uses.
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let mut selector = Selector::default();
        for part in split_top(labels.unwrap_or("")) {
            selector.labels.push(label_requirement(part)?);
        }
        for part in fields.unwrap_or("").split(',').map(str::trim) {
            if !part.is_empty() {
                selector.fields.push(field_requirement(part)?);
            }
        }
        Ok(selector)
    }

    /// Whether `object`, stored as `namespace/name`, is one of the selected objects. The fields are
    /// judged by the store's key, not the body (a test may plant an object whose body names another).
    pub(crate) fn matches(&self, namespace: &str, name: &str, object: &Value) -> bool {
        let labels = object["metadata"]["labels"].as_object();
        self.labels.iter().all(|r| r.holds(labels))
            && self.fields.iter().all(|f| {
                let value = match f.field {
                    Field::Name => name,
                    Field::Namespace => namespace,
                };
                (value == f.value) == f.equal
            })
    }
}

/// The comma-separated requirements of a label selector (commas inside `( )` belong to a set).
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

fn unparsable(part: &str, why: &str) -> String {
    format!("unable to parse requirement: {part:?}: {why}")
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of up to 63 characters of
/// alphanumerics, `-`, `_` and `.`, beginning and ending with an alphanumeric.
fn check_key(key: &str, part: &str) -> Result<String, String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) if valid_subdomain(prefix) => name,
        Some(_) => return Err(unparsable(part, "invalid label key prefix")),
        None => key,
    };
    if !is_label_name(name) {
        return Err(unparsable(part, &format!("invalid label key {key:?}")));
    }
    Ok(key.to_string())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label value: empty, or a label name.
fn check_value(value: &str, part: &str) -> Result<String, String> {
    if value.is_empty() || is_label_name(value) {
        Ok(value.to_string())
    } else {
        Err(unparsable(part, &format!("invalid label value {value:?}")))
    }
}

/// `a=b`, `a==b` or `a!=b`, split: the left side, whether it says equal, the right side.
fn split_equality(part: &str) -> Option<(&str, bool, &str)> {
    [("!=", false), ("==", true), ("=", true)]
        .iter()
        .find_map(|(op, equal)| {
            part.split_once(op)
                .map(|(l, r)| (l.trim(), *equal, r.trim()))
        })
}

fn label_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(check_key(key.trim(), part)?));
    }
    if let Some((k, equal, v)) = split_equality(part) {
        let key = check_key(k, part)?;
        let value = check_value(v, part)?;
        return Ok(if equal {
            Requirement::Equals(key, value)
        } else {
            Requirement::NotEquals(key, value)
        });
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or("");
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement::Exists(check_key(key, part)?));
    };
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(unparsable(part, "expected one of [=, ==, !=, in, notin]"));
    };
    let values = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| unparsable(part, "a set of values must be in parentheses"))?;
    let values = values
        .split(',')
        .map(|v| check_value(v.trim(), part))
        .collect::<Result<Vec<_>, _>>()?;
    let key = check_key(key, part)?;
    Ok(if negated {
        Requirement::NotIn(key, values)
    } else {
        Requirement::In(key, values)
    })
}

fn field_requirement(part: &str) -> Result<FieldRequirement, String> {
    let (field, equal, value) = split_equality(part)
        .ok_or_else(|| format!("invalid selector: {part:?}; can't understand {part:?}"))?;
    let field = match field {
        "metadata.name" => Field::Name,
        "metadata.namespace" => Field::Namespace,
        other => return Err(format!("field label not supported: {other}")),
    };
    Ok(FieldRequirement {
        field,
        equal,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": labels}})
    }

    fn select(labels: &str, fields: &str) -> Selector {
        Selector::parse(Some(labels), Some(fields)).unwrap()
    }

    #[test]
    fn equality_set_and_existence_requirements_all_hold() {
        let member = lease("m-a", json!({"kube-elector.io/set": "s", "member": "true"}));
        let shard = lease("s-0", json!({"kube-elector.io/set": "s"}));
        let bare = json!({"metadata": {"name": "x"}});
        let cases = [
            ("kube-elector.io/set=s,member=true", true, false, false),
            ("kube-elector.io/set==s", true, true, false),
            ("kube-elector.io/set!=s", false, false, true),
            ("member", true, false, false),
            ("!member", false, true, true),
            ("kube-elector.io/set in (s, t)", true, true, false),
            ("kube-elector.io/set notin (t)", true, true, true),
            ("kube-elector.io/set in (s),!member", false, true, false),
            ("", true, true, true),
        ];
        for (sel, m, s, b) in cases {
            let sel_ = select(sel, "");
            assert_eq!(
                (
                    sel_.matches("default", "m-a", &member),
                    sel_.matches("default", "s-0", &shard),
                    sel_.matches("default", "x", &bare)
                ),
                (m, s, b),
                "{sel}"
            );
        }
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let a = lease("a", json!({}));
        assert!(select("", "metadata.name=a").matches("default", "a", &a));
        assert!(!select("", "metadata.name=b").matches("default", "a", &a));
        assert!(
            select("", "metadata.name!=b,metadata.namespace==default").matches("default", "a", &a)
        );
        assert!(!select("", "metadata.namespace=other").matches("default", "a", &a));
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_reason() {
        for bad in [
            "a b",
            "k in a,b",
            "=v",
            "k=v v",
            "-k",
            "k in (a",
            "k=v!",
            "Example.com/k",
        ] {
            let e = Selector::parse(Some(bad), None).unwrap_err();
            assert!(e.starts_with("unable to parse requirement"), "{bad}: {e}");
        }
        let e = Selector::parse(None, Some("spec.holderIdentity=x")).unwrap_err();
        assert_eq!(e, "field label not supported: spec.holderIdentity");
        assert!(Selector::parse(None, Some("metadata.name")).is_err());
    }
}
