//! The test server's HTTP/1.1 layer: reading requests, writing responses, and routing to the store.

use std::io::{self, BufRead, Read, Write};

use serde_json::{Value, json};

use super::Inner;
use super::faults::Verdict;
use super::store::{Reply, Resource, status, status_for_code};

/// One parsed request.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A query parameter, percent-decoded (enough for `fieldSelector=metadata.name%3Dx`).
    pub(crate) fn param(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| {
                let mut out = Vec::new();
                let b = v.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' && i + 2 < b.len() {
                        if let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                            .ok()
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                        {
                            out.push(x);
                            i += 3;
                            continue;
                        }
                    }
                    out.push(if b[i] == b'+' { b' ' } else { b[i] });
                    i += 1;
                }
                String::from_utf8_lossy(&out).into_owned()
            })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn bearer_token(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

const MAX_HEADER_LINES: usize = 100;
const MAX_BODY: usize = 3 * 1024 * 1024;

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(16 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    let line = String::from_utf8(line).map_err(|_| invalid("header is not UTF-8"))?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Read one request; `Ok(None)` when the client closed the connection between requests.
pub(crate) fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let Some(line) = read_line(r)? else {
        return Ok(None);
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid("bad request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let Some(h) = read_line(r)? else {
            return Err(invalid("eof in headers"));
        };
        if h.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADER_LINES {
            return Err(invalid("too many headers"));
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = read_line(r)?.ok_or_else(|| invalid("eof in chunk size"))?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                while read_line(r)?.is_some_and(|l| !l.is_empty()) {}
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(invalid("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            read_line(r)?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// The head and the first half of the body of a response announced in full.
pub(crate) fn write_truncated<W: Write>(w: &mut W, code: u16, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        reason_phrase(code),
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(&body[..body.len() / 2])?;
    w.flush()
}

pub(crate) fn write_response<W: Write>(
    w: &mut W,
    code: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nDate: {}\r\nContent-Length: {}\r\n",
        reason_phrase(code),
        http_date(),
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a head and body in separate segments make the client wait for a second wake-up.
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// The `Date` header's value, as every HTTP server sends it (the API server's clock, to the second).
pub(crate) fn http_date() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// What the connection loop should do after a request.
/// A watch to stream.
pub(crate) struct Watch {
    pub(crate) resource: Resource,
    pub(crate) namespace: String,
    pub(crate) name: Option<String>,
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
        retry_after: Option<u64>,
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
    let impersonation: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("impersonate-"))
        .cloned()
        .collect();
    if !impersonation.is_empty() {
        *inner
            .last_impersonation
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = impersonation;
    }
    inner.count(verb, token);
    match inner
        .faults
        .judge(token, verb, &req.path, &inner.down_or_stopped)
    {
        Verdict::Proceed => {}
        Verdict::Drop => return Outcome::Close,
        Verdict::Truncate => {
            if inner.is_down() || !inner.authorized(req.bearer_token(), cert_user, basic_user) {
                return Outcome::Close;
            }
            let reply = route(inner, req);
            return Outcome::Truncated {
                code: reply.code,
                body: to_bytes(&reply.body),
            };
        }
        Verdict::Answer {
            code,
            body,
            retry_after,
        } => {
            let body = body.map_or_else(|| to_bytes(&status_for_code(code)), String::into_bytes);
            return Outcome::Respond {
                code,
                body,
                retry_after,
            };
        }
    }
    if inner.is_down() {
        return Outcome::Close;
    }
    if !inner.authorized(req.bearer_token(), cert_user, basic_user) {
        let body = status(401, "Unauthorized", "Unauthorized", None);
        return Outcome::Respond {
            code: 401,
            body: to_bytes(&body),
            retry_after: None,
        };
    }
    if let Some(user) = req.bearer_token().filter(|t| inner.forbidden.contains(*t)) {
        return Outcome::Respond {
            code: 403,
            body: to_bytes(&forbidden(inner, req, user)),
            retry_after: None,
        };
    }
    if let Some(w) = watch_request(req, inner) {
        return w;
    }
    let mutating = req.method != "GET";
    let reply = route(inner, req);
    if mutating {
        inner.store_changed.notify_all();
    }
    Outcome::Respond {
        code: reply.code,
        body: to_bytes(&reply.body),
        retry_after: None,
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
    let mut store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
    match (req.method.as_str(), name) {
        ("GET", Some(name)) => store.read(resource, ns, name),
        ("GET", None) => store.list(resource, ns),
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

/// `GET .../namespaces/{ns}/{plural}?watch=true[&fieldSelector=metadata.name=x][&resourceVersion=N]`.
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
    let name = req
        .param("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name=").map(str::to_string));
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
        name,
        from,
        bookmarks: req.param("allowWatchBookmarks").as_deref() == Some("true"),
        timeout: std::time::Duration::from_secs(timeout),
    }))
}

fn chunk<W: Write>(w: &mut W, event: &Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).expect("a JSON value always serializes");
    line.push(b'\n');
    w.write_all(format!("{:x}\r\n", line.len()).as_bytes())?;
    w.write_all(&line)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

/// Stream a watch: replay the history after `from` (or the current objects), then changes as they
/// happen, bookmarks every second when asked, until the timeout; `410 Gone` (as an ERROR event, as the
/// real API server sends it) for a compacted version.
pub(crate) fn stream<W: Write>(inner: &Inner, w: &mut W, watch: &Watch) -> io::Result<()> {
    use super::lock;
    let deadline = std::time::Instant::now() + watch.timeout;
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let name = watch.name.as_deref();
    let mut store = lock(&inner.store);
    let mut last = match watch.from {
        Some(rv) if rv < store.compacted_rv => {
            let compacted = store.compacted_rv;
            drop(store);
            let gone = status(
                410,
                "Expired",
                &format!("too old resource version: {rv} ({compacted})"),
                None,
            );
            chunk(w, &json!({"type": "ERROR", "object": gone}))?;
            return w.write_all(b"0\r\n\r\n");
        }
        Some(rv) => rv,
        None => {
            let current: Vec<Value> = store
                .all(watch.resource, &watch.namespace)
                .into_iter()
                .filter(|o| name.is_none_or(|n| o["metadata"]["name"] == n))
                .collect();
            let rv = store.last_rv;
            drop(store);
            for o in current {
                chunk(w, &json!({"type": "ADDED", "object": o}))?;
            }
            store = lock(&inner.store);
            rv
        }
    };
    let mut next_bookmark = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let changes = store.changes_after(last, watch.resource, &watch.namespace, name);
        if let Some(c) = changes.last() {
            last = c.rv;
            drop(store);
            for c in &changes {
                chunk(w, &json!({"type": c.kind, "object": c.object}))?;
            }
            store = lock(&inner.store);
            continue;
        }
        let now = std::time::Instant::now();
        if inner.is_down() || now >= deadline {
            break;
        }
        if watch.bookmarks && now >= next_bookmark {
            let rv = store.last_rv;
            drop(store);
            let mark = json!({"type": "BOOKMARK", "object": {"kind": watch.resource.kind(), "apiVersion": watch.resource.api_version(), "metadata": {"resourceVersion": rv.to_string()}}});
            chunk(w, &mark)?;
            next_bookmark = now + std::time::Duration::from_secs(1);
            store = lock(&inner.store);
            continue;
        }
        store = inner
            .store_changed
            .wait_timeout(store, std::time::Duration::from_millis(100))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    drop(store);
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
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
