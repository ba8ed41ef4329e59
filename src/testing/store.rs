//! The test server's objects: resourceVersions, validation and `Status` bodies shaped like a real
//! kube-apiserver's (see tests/fixtures/apiserver).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::record::time::parse_micro_time_strict;
use crate::testing::names::valid_subdomain;
use crate::testing::selector::Selector;

/// A resource kind the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Resource {
    Leases,
    ConfigMaps,
    Endpoints,
    Events,
    LeaseCandidates,
}

impl Resource {
    pub(crate) fn from_path(group_version: &str, plural: &str) -> Option<Self> {
        match (group_version, plural) {
            ("coordination.k8s.io/v1", "leases") => Some(Resource::Leases),
            ("v1", "configmaps") => Some(Resource::ConfigMaps),
            ("v1", "endpoints") => Some(Resource::Endpoints),
            ("v1", "events") => Some(Resource::Events),
            ("coordination.k8s.io/v1beta1", "leasecandidates") => Some(Resource::LeaseCandidates),
            _ => None,
        }
    }

    /// By the plural name used in paths.
    pub(crate) fn from_plural(plural: &str) -> Option<Self> {
        [
            Resource::Leases,
            Resource::ConfigMaps,
            Resource::Endpoints,
            Resource::Events,
            Resource::LeaseCandidates,
        ]
        .into_iter()
        .find(|r| r.plural() == plural)
    }

    fn group(self) -> &'static str {
        match self {
            Resource::Leases | Resource::LeaseCandidates => "coordination.k8s.io",
            Resource::ConfigMaps | Resource::Endpoints | Resource::Events => "",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Resource::Leases => "leases",
            Resource::ConfigMaps => "configmaps",
            Resource::Endpoints => "endpoints",
            Resource::Events => "events",
            Resource::LeaseCandidates => "leasecandidates",
        }
    }

    /// The API server's `AllowCreateOnUpdate`.
    fn creates_on_update(self) -> bool {
        !matches!(self, Resource::ConfigMaps)
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Resource::Leases => "Lease",
            Resource::ConfigMaps => "ConfigMap",
            Resource::Endpoints => "Endpoints",
            Resource::Events => "Event",
            Resource::LeaseCandidates => "LeaseCandidate",
        }
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Resource::Leases => "coordination.k8s.io/v1",
            Resource::LeaseCandidates => "coordination.k8s.io/v1beta1",
            Resource::ConfigMaps | Resource::Endpoints | Resource::Events => "v1",
        }
    }

    /// `Lease.coordination.k8s.io` (core kinds have no group suffix).
    fn qualified_kind(self) -> String {
        if self.group().is_empty() {
            self.kind().to_string()
        } else {
            format!("{}.{}", self.kind(), self.group())
        }
    }

    /// `leases.coordination.k8s.io` (core resources have no group suffix).
    fn qualified(self) -> String {
        if self.group().is_empty() {
            self.plural().to_string()
        } else {
            format!("{}.{}", self.plural(), self.group())
        }
    }

    fn details(self, name: &str, kind: &str) -> Value {
        let mut d = json!({"name": name, "kind": kind});
        if !self.group().is_empty() {
            d["group"] = json!(self.group());
        }
        d
    }
}

/// An HTTP answer: code and JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) body: Value,
}

/// An answer that refuses the request with a Status body.
fn refuse(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    reply(code, status(code, reason, message, details))
}

/// A `Status` failure body.
pub(crate) fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

/// The reason and message a real API server gives for a bare status code.
pub(crate) fn status_for_code(code: u16) -> Value {
    let (reason, message) = match code {
        400 => ("BadRequest", "bad request"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        409 => (
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        422 => ("Invalid", "the object is invalid"),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        500 => (
            "InternalError",
            "an error on the server has prevented the request from succeeding",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted",
        ),
        _ => ("", "injected failure"),
    };
    status(code, reason, message, None)
}

fn reply(code: u16, body: Value) -> Reply {
    Reply { code, body }
}

type Key = (Resource, String, String);

/// All objects, with one global resourceVersion counter as etcd has.
#[derive(Debug)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    pub(crate) last_rv: u64,
    next_uid: u64,
    /// The change history watches replay from (bounded, as etcd's is by compaction).
    history: std::collections::VecDeque<Change>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    pub(crate) compacted_rv: u64,
}

/// One change, as a watch event.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: &'static str,
    pub(crate) resource: Resource,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) object: Value,
}

const HISTORY: usize = 1000;

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            last_rv: 100,
            next_uid: 1,
            history: std::collections::VecDeque::new(),
            compacted_rv: 100,
        }
    }
}

impl Store {
    /// Record a change at the current resourceVersion.
    fn changed(
        &mut self,
        kind: &'static str,
        resource: Resource,
        ns: &str,
        name: &str,
        object: &Value,
    ) {
        if self.history.len() == HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        self.history.push_back(Change {
            rv: self.last_rv,
            kind,
            resource,
            namespace: ns.to_string(),
            name: name.to_string(),
            object: object.clone(),
        });
    }

    /// The changes after `rv` to the selected objects of `resource` in `ns`, each judged by the object it
    /// carries (a deletion by the object as it was deleted). Unlike the real API server, an object whose
    /// labels change so that it stops matching is not reported as deleted to a label-selected watch.
    pub(crate) fn changes_after(
        &self,
        rv: u64,
        resource: Resource,
        ns: &str,
        selector: &Selector,
    ) -> Vec<Change> {
        self.history
            .iter()
            .filter(|c| {
                c.rv > rv
                    && c.resource == resource
                    && c.namespace == ns
                    && selector.matches(&c.namespace, &c.name, &c.object)
            })
            .cloned()
            .collect()
    }

    /// Forget the history, as an etcd compaction does: older watches get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.last_rv;
    }

    pub(crate) fn get(&self, r: Resource, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(r, ns.to_string(), name.to_string()))
    }

    fn not_found(r: Resource, name: &str) -> Reply {
        refuse(
            404,
            "NotFound",
            &format!("{} {name:?} not found", r.qualified()),
            Some(r.details(name, r.plural())),
        )
    }

    pub(crate) fn read(&self, r: Resource, ns: &str, name: &str) -> Reply {
        match self.get(r, ns, name) {
            Some(o) => reply(200, o.clone()),
            None => Self::not_found(r, name),
        }
    }

    /// Every object of a kind, in every namespace: `(namespace, name, object)`.
    pub(crate) fn entries(&self, r: Resource) -> Vec<(String, String, Value)> {
        self.objects
            .iter()
            .filter(|((res, _, _), _)| *res == r)
            .map(|((_, ns, name), v)| (ns.clone(), name.clone(), v.clone()))
            .collect()
    }

    /// The selected objects of a kind in a namespace (`Selector::default()`: all of them).
    pub(crate) fn selected(&self, r: Resource, ns: &str, selector: &Selector) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((res, n, name), o)| *res == r && n == ns && selector.matches(n, name, o))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The selected objects of a kind in a namespace, as a `List`.
    pub(crate) fn list(&self, r: Resource, ns: &str, selector: &Selector) -> Reply {
        let items = self.selected(r, ns, selector);
        reply(
            200,
            json!({
                "kind": format!("{}List", r.kind()),
                "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": self.last_rv.to_string()},
                "items": items,
            }),
        )
    }

    pub(crate) fn delete(&mut self, r: Resource, ns: &str, name: &str) -> Reply {
        match self.objects.remove(&(r, ns.to_string(), name.to_string())) {
            Some(mut old) => {
                self.last_rv += 1;
                old["metadata"]["resourceVersion"] = json!(self.last_rv.to_string());
                self.changed("DELETED", r, ns, name, &old);
                reply(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "details": r.details(name, r.plural())}),
                )
            }
            None => Self::not_found(r, name),
        }
    }

    /// Send `object` to the watches of `name` as a `MODIFIED` event without storing it: a watch that
    /// lies (a buggy proxy, a cache that serves another object's state).
    pub(crate) fn forge_change(&mut self, r: Resource, ns: &str, name: &str, object: &Value) {
        self.last_rv += 1;
        self.changed("MODIFIED", r, ns, name, object);
    }

    /// Store `object` as is (no validation): for tests that plant malformed records.
    pub(crate) fn put_raw(
        &mut self,
        r: Resource,
        ns: &str,
        name: &str,
        mut object: Value,
    ) -> String {
        self.last_rv += 1;
        let rv = self.last_rv.to_string();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(rv));
        }
        let kind = if self.get(r, ns, name).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.changed(kind, r, ns, name, &object);
        self.objects
            .insert((r, ns.to_string(), name.to_string()), object);
        rv
    }

    pub(crate) fn create(&mut self, r: Resource, ns: &str, body: &[u8]) -> Reply {
        let mut object = match decode(r, body) {
            Ok(o) => o,
            Err(e) => return e,
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return refuse(
                422,
                "Invalid",
                &format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    r.kind()
                ),
                None,
            );
        }
        if object["metadata"]
            .get("resourceVersion")
            .is_some_and(|v| !v.is_null() && v != "")
        {
            return reply(500, {
                // The real server sends this one without a reason.
                let mut s = status(
                    500,
                    "",
                    "resourceVersion should not be set on objects to be created",
                    None,
                );
                s.as_object_mut().map(|o| o.remove("reason"));
                s
            });
        }
        if let Err(e) = validate(r, &name, &object) {
            return e;
        }
        let key = (r, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return refuse(
                409,
                "AlreadyExists",
                &format!("{} {name:?} already exists", r.qualified()),
                Some(r.details(&name, r.plural())),
            );
        }
        self.insert_new(r, ns, &name, &mut object);
        reply(201, object)
    }

    fn insert_new(&mut self, r: Resource, ns: &str, name: &str, object: &mut Value) {
        self.last_rv += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.next_uid);
        self.next_uid += 1;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(uid);
        meta["resourceVersion"] = json!(self.last_rv.to_string());
        meta["creationTimestamp"] = json!(crate::record::format_seconds_time(&chrono::Utc::now()));
        self.changed("ADDED", r, ns, name, object);
        self.objects
            .insert((r, ns.to_string(), name.to_string()), object.clone());
    }

    pub(crate) fn replace(&mut self, r: Resource, ns: &str, name: &str, body: &[u8]) -> Reply {
        let mut object = match decode(r, body) {
            Ok(o) => o,
            Err(e) => return e,
        };
        let body_name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if body_name != name {
            return refuse(
                400,
                "BadRequest",
                &format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                ),
                None,
            );
        }
        if let Err(e) = validate(r, name, &object) {
            return e;
        }
        let key = (r, ns.to_string(), name.to_string());
        let Some(current) = self.objects.get(&key) else {
            if !r.creates_on_update() {
                return Self::not_found(r, name);
            }
            // A body that names the object's uid makes it a precondition, which a missing object fails.
            if let Some(uid) = object["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
                return refuse(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} {name:?}: StorageError: invalid object, Code: 4, Key: /registry/{}/{ns}/{name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: ",
                        r.qualified(),
                        r.plural()
                    ),
                    Some(r.details(name, r.plural())),
                );
            }
            // Leases and Endpoints are created by a PUT when they are missing (fixture 15).
            self.insert_new(r, ns, name, &mut object);
            return reply(201, object);
        };
        let sent_rv = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if sent_rv.is_empty() {
            let cause = "Invalid value: 0: must be specified for an update";
            let mut details = r.details(name, r.plural());
            details["causes"] = json!([{"reason": "FieldValueInvalid", "message": cause, "field": "metadata.resourceVersion"}]);
            return refuse(
                422,
                "Invalid",
                &format!(
                    "{} {name:?} is invalid: metadata.resourceVersion: {cause}",
                    r.qualified()
                ),
                Some(details),
            );
        }
        if current["metadata"]["resourceVersion"].as_str() != Some(sent_rv.as_str()) {
            return refuse(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    r.qualified()
                ),
                Some(r.details(name, r.plural())),
            );
        }
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = current["metadata"]["uid"].clone();
        meta["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        meta["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        // A write that changes nothing is a no-op: the resourceVersion stays (as etcd-backed servers do).
        if object == *current {
            return reply(200, object);
        }
        self.last_rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.last_rv.to_string());
        self.changed("MODIFIED", r, ns, name, &object);
        self.objects.insert(key, object.clone());
        reply(200, object)
    }
}

/// Parse a request body into an object of kind `r`, as the API server's decoder does.
fn decode(r: Resource, body: &[u8]) -> Result<Value, Reply> {
    let bad = |m: String| {
        refuse(
            400,
            "BadRequest",
            &format!(
                "{} in version \"v1\" cannot be handled as a {}: {m}",
                r.kind(),
                r.kind()
            ),
            None,
        )
    };
    let mut object: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if !object.is_object() {
        return Err(bad("expected a JSON object".into()));
    }
    if let Some(kind) = object.get("kind").and_then(Value::as_str) {
        if kind != r.kind() {
            return Err(bad(format!("expected kind {}, got {kind}", r.kind())));
        }
    }
    object["kind"] = json!(r.kind());
    object["apiVersion"] = json!(r.api_version());
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    if let Some(m) = object["metadata"].as_object_mut() {
        m.remove("managedFields");
        for field in ["labels", "annotations"] {
            match m.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
                Some(_) => return Err(bad(format!("metadata.{field}: expected a map of strings"))),
            }
        }
    }
    match r {
        Resource::ConfigMaps | Resource::Endpoints | Resource::Events => {}
        Resource::LeaseCandidates => {
            for field in ["renewTime", "pingTime"] {
                match object["spec"].get(field) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if parse_micro_time_strict(s).is_some() => {}
                    Some(other) => {
                        return Err(bad(format!(
                            "parsing time {other} as MicroTime: cannot parse"
                        )));
                    }
                }
            }
        }
        Resource::Leases => {
            let spec = object.get("spec").cloned().unwrap_or(Value::Null);
            if !(spec.is_null() || spec.is_object()) {
                return Err(bad("spec: expected an object".into()));
            }
            for field in ["acquireTime", "renewTime"] {
                match spec.get(field) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if parse_micro_time_strict(s).is_some() => {}
                    Some(other) => {
                        return Err(bad(format!(
                            "parsing time {other} as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse"
                        )));
                    }
                }
            }
            if spec
                .get("holderIdentity")
                .is_some_and(|v| !(v.is_null() || v.is_string()))
            {
                return Err(bad("spec.holderIdentity: expected a string".into()));
            }
            for field in ["leaseDurationSeconds", "leaseTransitions"] {
                if let Some(v) = spec.get(field) {
                    if !(v.is_null() || v.as_i64().is_some_and(|n| i32::try_from(n).is_ok())) {
                        return Err(bad(format!("spec.{field}: expected an int32, got {v}")));
                    }
                }
            }
        }
    }
    Ok(object)
}

/// Field validation with 422 Invalid and `details.causes`, as the API server does.
fn validate(r: Resource, name: &str, object: &Value) -> Result<(), Reply> {
    // (field, reason, message), as the API server's field errors read.
    let mut causes: Vec<(&str, &str, String)> = Vec::new();
    if !valid_subdomain(name) {
        causes.push((
            "metadata.name",
            "FieldValueInvalid",
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ));
    }
    let required = |causes: &mut Vec<(&str, &str, String)>, field: &'static str, v: &Value| {
        if v.as_str().is_none_or(str::is_empty) {
            causes.push((field, "FieldValueRequired", "Required value".to_string()));
        }
    };
    match r {
        Resource::ConfigMaps | Resource::Endpoints => {}
        Resource::LeaseCandidates => {
            let spec = &object["spec"];
            required(&mut causes, "spec.leaseName", &spec["leaseName"]);
            required(&mut causes, "spec.binaryVersion", &spec["binaryVersion"]);
            required(&mut causes, "spec.strategy", &spec["strategy"]);
        }
        Resource::Events => {
            required(&mut causes, "reason", &object["reason"]);
            required(&mut causes, "message", &object["message"]);
            required(
                &mut causes,
                "involvedObject.name",
                &object["involvedObject"]["name"],
            );
        }
        Resource::Leases => {
            let spec = &object["spec"];
            if let Some(d) = spec["leaseDurationSeconds"].as_i64() {
                if d <= 0 {
                    causes.push((
                        "spec.leaseDurationSeconds",
                        "FieldValueInvalid",
                        format!("Invalid value: {d}: must be greater than 0"),
                    ));
                }
            }
            if let Some(t) = spec["leaseTransitions"].as_i64() {
                if t < 0 {
                    causes.push((
                        "spec.leaseTransitions",
                        "FieldValueInvalid",
                        format!("Invalid value: {t}: must be greater than or equal to 0"),
                    ));
                }
            }
            if spec["preferredHolder"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
                && spec["strategy"].as_str().is_none_or(str::is_empty)
            {
                causes.push((
                    "spec.preferredHolder",
                    "FieldValueForbidden",
                    "Forbidden: may only be specified if `strategy` is defined".into(),
                ));
            }
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let summary: Vec<String> = causes.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
    let mut details = r.details(name, r.kind());
    details["causes"] = Value::Array(
        causes
            .iter()
            .map(|(f, reason, m)| json!({"reason": reason, "message": m, "field": f}))
            .collect(),
    );
    Err(refuse(
        422,
        "Invalid",
        &format!(
            "{} {name:?} is invalid: {}",
            r.qualified_kind(),
            summary.join(", ")
        ),
        Some(details),
    ))
}
