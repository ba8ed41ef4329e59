//! The API behind the HTTP layer: counters, faults, authentication and authorization, then routing
//! each request to the store, or to a watch.

use serde_json::{Value, json};

use super::Request;
use crate::sync::lock;
use crate::testing::Inner;
use crate::testing::faults::Verdict;
use crate::testing::selector::Selector;
use crate::testing::store::{Reply, Resource, status, status_for_code};

/// What the connection loop should do after a request.
/// A watch to stream.
pub(crate) struct Watch {
    pub(crate) resource: Resource,
    pub(crate) namespace: String,
    pub(crate) selector: Selector,
    pub(crate) from: Option<u64>,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: std::time::Duration,
}

pub(crate) enum Outcome {
    /// Stream watch events on this connection.
    Watch(Watch),
    /// Send half of this response, then close.
    Truncated {
        code: u16,
        body: Vec<u8>,
    },
    Respond {
        code: u16,
        body: Vec<u8>,
        /// Extra headers (`Retry-After`, `Location`).
        headers: Vec<(&'static str, String)>,
    },
    Close,
}

/// Handle one request: counters, faults, authentication, then the API. A client is known by its bearer
/// token or, failing that, by the user of its client certificate.
pub(crate) fn handle(inner: &Inner, req: &Request, cert_user: Option<&str>) -> Outcome {
    let basic_user = inner.basic_user(req.header("authorization"));
    let token = req.bearer_token().or(cert_user).or(basic_user);
    // Watches are counted apart from GETs, as the API server's audit log calls them `watch`.
    let watching =
        req.method == "GET" && matches!(req.param("watch").as_deref(), Some("true" | "1"));
    let verb = if watching {
        "WATCH"
    } else {
        req.method.as_str()
    };
    note_impersonation(inner, req);
    inner.count(verb, token);
    let authorized = || inner.authorized(req.bearer_token(), cert_user, basic_user);
    if let Some(faulted) = injected(inner, req, token, verb, &authorized) {
        return faulted;
    }
    if inner.is_down() {
        return Outcome::Close;
    }
    if !authorized() {
        let body = status(401, "Unauthorized", "Unauthorized", None);
        return respond(401, &body);
    }
    if let Some(user) = req.bearer_token().filter(|t| inner.forbidden.contains(*t)) {
        return respond(403, &forbidden(inner, req, user));
    }
    if let Some(w) = watch_request(req, inner) {
        return w;
    }
    let reply = route(inner, req);
    if req.method != "GET" {
        inner.store_changed.notify_all();
    }
    respond(reply.code, &reply.body)
}

fn respond(code: u16, body: &Value) -> Outcome {
    Outcome::Respond {
        code,
        body: to_bytes(body),
        headers: Vec::new(),
    }
}

/// Remember the last request's `Impersonate-*` headers, for tests to check.
fn note_impersonation(inner: &Inner, req: &Request) {
    let impersonation: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("impersonate-"))
        .cloned()
        .collect();
    if !impersonation.is_empty() {
        *lock(&inner.last_impersonation) = impersonation;
    }
}

/// What an injected fault makes of this request, if one applies.
fn injected(
    inner: &Inner,
    req: &Request,
    token: Option<&str>,
    verb: &str,
    authorized: &dyn Fn() -> bool,
) -> Option<Outcome> {
    match inner
        .faults
        .judge(token, verb, &req.path, &inner.down_or_stopped)
    {
        Verdict::Proceed => None,
        Verdict::Drop => Some(Outcome::Close),
        // Half an answer: the request takes effect, the client sees a broken response.
        Verdict::Truncate if inner.is_down() || !authorized() => Some(Outcome::Close),
        Verdict::Truncate => {
            let reply = route(inner, req);
            Some(Outcome::Truncated {
                code: reply.code,
                body: to_bytes(&reply.body),
            })
        }
        Verdict::Answer {
            code,
            body,
            headers,
        } => {
            let body = body.map_or_else(|| to_bytes(&status_for_code(code)), String::into_bytes);
            Some(Outcome::Respond {
                code,
                body,
                headers,
            })
        }
    }
}

/// RBAC's answer to a user without a Role: `leases.coordination.k8s.io "x" is forbidden: User "u" cannot
/// get resource "leases" in API group "coordination.k8s.io" in the namespace "ns"`.
fn forbidden(inner: &Inner, req: &Request, user: &str) -> Value {
    let path = req
        .path
        .strip_prefix(inner.path_prefix.as_str())
        .unwrap_or(&req.path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["apis", g, _, rest @ ..] => (*g, rest),
        ["api", _, rest @ ..] => ("", rest),
        _ => ("", &[][..]),
    };
    let (ns, plural, name) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
        _ => ("", "", None),
    };
    let watching = matches!(req.param("watch").as_deref(), Some("true" | "1"));
    let verb = match (req.method.as_str(), name) {
        ("GET", _) if watching => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => "patch",
    };
    let resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    let subject = match name {
        Some(n) => format!("{resource} {n:?}"),
        None => resource,
    };
    let mut details = json!({"kind": plural});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    status(
        403,
        "Forbidden",
        &format!(
            "{subject} is forbidden: User {user:?} cannot {verb} resource {plural:?} in API group {group:?} in the namespace {ns:?}"
        ),
        Some(details),
    )
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value always serializes")
}

fn route(inner: &Inner, req: &Request) -> Reply {
    let Some(path) = req.path.strip_prefix(inner.path_prefix.as_str()) else {
        return not_found_path();
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if req.method == "GET" && segments == ["version"] {
        return Reply {
            code: 200,
            body: json!({"major": "1", "minor": "36", "gitVersion": "v1.36.2-kube-elector-test",
                         "goVersion": "n/a", "compiler": "rust", "platform": "linux/amd64"}),
        };
    }
    // /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}] or /api/v1/namespaces/{ns}/{plural}[/{name}]
    let (gv, rest) = match segments.as_slice() {
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        ["api", v, rest @ ..] => (v.to_string(), rest),
        _ => return not_found_path(),
    };
    let (ns, plural, name) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
        _ => return not_found_path(),
    };
    let Some(resource) = Resource::from_path(&gv, plural) else {
        return not_found_path();
    };
    let mut store = lock(&inner.store);
    match (req.method.as_str(), name) {
        ("GET", Some(name)) => store.read(resource, ns, name),
        ("GET", None) => match selector(req) {
            Ok(selector) => store.list(resource, ns, &selector),
            Err(refused) => refused,
        },
        ("POST", None) => store.create(resource, ns, &req.body),
        ("PUT", Some(name)) => store.replace(resource, ns, name, &req.body),
        ("DELETE", Some(name)) => store.delete(resource, ns, name),
        (method, _) => Reply {
            code: 405,
            body: status(
                405,
                "MethodNotAllowed",
                &format!(
                    "the server does not allow this method on the requested resource ({method})"
                ),
                None,
            ),
        },
    }
}

/// The request's label and field selectors; a `400 BadRequest` reply when one does not parse.
fn selector(req: &Request) -> Result<Selector, Reply> {
    Selector::parse(
        req.param("labelSelector").as_deref(),
        req.param("fieldSelector").as_deref(),
    )
    .map_err(|message| Reply {
        code: 400,
        body: status(400, "BadRequest", &message, None),
    })
}

/// `GET .../namespaces/{ns}/{plural}?watch=true[&labelSelector=..][&fieldSelector=..][&resourceVersion=N]`.
fn watch_request(req: &Request, inner: &Inner) -> Option<Outcome> {
    if req.method != "GET" || !matches!(req.param("watch").as_deref(), Some("true" | "1")) {
        return None;
    }
    let path = req.path.strip_prefix(inner.path_prefix.as_str())?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, ns, plural) = match segments.as_slice() {
        ["apis", g, v, "namespaces", ns, plural] => (format!("{g}/{v}"), *ns, *plural),
        ["api", v, "namespaces", ns, plural] => (v.to_string(), *ns, *plural),
        _ => return None,
    };
    let resource = Resource::from_path(&gv, plural)?;
    let selector = match selector(req) {
        Ok(s) => s,
        Err(refused) => return Some(respond(refused.code, &refused.body)),
    };
    let from = req
        .param("resourceVersion")
        .filter(|v| !v.is_empty() && v != "0")
        .and_then(|v| v.parse().ok());
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(300);
    Some(Outcome::Watch(Watch {
        resource,
        namespace: ns.to_string(),
        selector,
        from,
        bookmarks: req.param("allowWatchBookmarks").as_deref() == Some("true"),
        timeout: std::time::Duration::from_secs(timeout),
    }))
}

fn not_found_path() -> Reply {
    Reply {
        code: 404,
        body: status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}
