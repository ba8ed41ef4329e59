//! What every lock object has in common: GET/POST/PUT of one named object, the cached object sent back
//! with its `resourceVersion` on update (so a renew is one PUT), and decoding. The kinds differ only in
//! where the record lives (a Lease's spec, an annotation) and in their paths.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Lock, ObjectReference};
use crate::client::{Answer, RestClient, ServerDate};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::{INCARNATION_ANNOTATION, LeaderElectionRecord, VersionedRecord};

/// A kind of object a lock can live in.
pub trait LockObject: Send + 'static {
    /// `kind`, e.g. `Lease`.
    const KIND: &'static str;
    /// `apiVersion`, e.g. `coordination.k8s.io/v1` or `v1`.
    const API_VERSION: &'static str;
    /// The resource name in paths, e.g. `leases`.
    const PLURAL: &'static str;
    /// Read the record out of the object (leniently: missing fields read as empty).
    fn read(object: &Value) -> std::result::Result<LeaderElectionRecord, String>;
    /// Write the record into the object, leaving everything else in it untouched.
    fn write(object: &mut Value, record: &LeaderElectionRecord);
    /// How finely the kind writes the record's times (see [`Lock::record_time_resolution`]).
    const TIME_RESOLUTION: Duration = Duration::from_micros(1);
}

/// A lock held in one named object of kind `K`.
pub struct ObjectLock<K> {
    /// Its own, or shared with the other locks of an elector set.
    client: Arc<RestClient>,
    /// Shared, as are the name and the identity, with the rest of an elector set: a process may hold a
    /// thousand locks, so a lock keeps only what is its own (its cached object). Paths and a request's
    /// context for messages are written out as a request is made, into its URL and its messages.
    namespace: Arc<str>,
    name: Arc<str>,
    identity: Arc<str>,
    /// The whole object last read or written, as the server sent it but for its managed fields (see
    /// `accept`): sent back on update, unknown fields included. Kept as its JSON text, not as a parsed
    /// tree: a fifth of the memory, which counts when one process holds a thousand locks; an update
    /// parses it again (a few microseconds). Empty when there is none. Rewritten in place: a renew's
    /// answer is the same size as the last, so the buffer stays where it is, with no new allocation
    /// among each renew's short-lived ones.
    cached: Vec<u8>,
    /// The server's clock in the last answer through this lock (its `Date` header, as it came).
    server_date: Option<ServerDate>,
    /// Labels the holder puts on the object when it writes (shared by the locks of an elector set).
    labels: Arc<BTreeMap<String, String>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for ObjectLock<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLock")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// `/apis/{group}/{version}/namespaces/{ns}/{plural}` (or `/api/v1/...` for core kinds).
pub(crate) fn collection_path<K: LockObject>(namespace: &str) -> String {
    ObjectPath::<K>::new(namespace, None).to_string()
}

/// A collection's path, or with a name an object's, written out where it is used (a request's URL).
struct ObjectPath<'a, K> {
    namespace: &'a str,
    name: Option<&'a str>,
    kind: PhantomData<fn() -> K>,
}

impl<'a, K> ObjectPath<'a, K> {
    fn new(namespace: &'a str, name: Option<&'a str>) -> Self {
        ObjectPath {
            namespace,
            name,
            kind: PhantomData,
        }
    }
}

impl<K: LockObject> fmt::Display for ObjectPath<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api = if K::API_VERSION.contains('/') {
            "apis"
        } else {
            "api"
        };
        write!(
            f,
            "/{api}/{}/namespaces/{}/{}",
            K::API_VERSION,
            self.namespace,
            K::PLURAL
        )?;
        match self.name {
            Some(name) => write!(f, "/{name}"),
            None => Ok(()),
        }
    }
}

impl<K: LockObject> ObjectLock<K> {
    /// A lock in the object `namespace/name` on the API server of `config`, written as `identity`. The
    /// lock gets its own HTTP agent, so its requests reuse one pooled connection.
    pub fn new(
        config: &Config,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Result<Self> {
        Ok(Self::with_client(
            Arc::new(RestClient::new(config)?),
            namespace.into(),
            name.into(),
            identity.into(),
        ))
    }

    /// A lock on a client shared with other locks (an elector set's: one connection pool for all, and
    /// one namespace and identity).
    pub(crate) fn with_client(
        client: Arc<RestClient>,
        namespace: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        identity: impl Into<Arc<str>>,
    ) -> Self {
        let (namespace, name) = (namespace.into(), name.into());
        ObjectLock {
            client,
            namespace,
            name,
            identity: identity.into(),
            cached: Vec::new(),
            server_date: None,
            labels: Arc::default(),
            kind: PhantomData,
        }
    }

    /// Interrupts this lock's request in flight from another thread.
    pub(crate) fn interrupter(&self) -> crate::client::Interrupter {
        self.client.interrupter()
    }

    /// Labels to put on the object whenever we write it (client-go's `NewWithLabels`); other labels stay.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = Arc::new(labels);
        self
    }

    /// The same, with labels shared by many locks.
    pub(crate) fn with_shared_labels(mut self, labels: Arc<BTreeMap<String, String>>) -> Self {
        self.labels = labels;
        self
    }

    /// The record, the incarnation that wrote it and our labels into the object.
    fn write(&self, object: &mut Value, record: &LeaderElectionRecord) {
        K::write(object, record);
        write_incarnation(object, record.incarnation.as_deref());
        if !self.labels.is_empty() {
            if !object["metadata"]["labels"].is_object() {
                object["metadata"]["labels"] = json!({});
            }
            for (k, v) in self.labels.iter() {
                object["metadata"]["labels"][k] = json!(v);
            }
        }
    }

    fn item_path(&self) -> ObjectPath<'_, K> {
        ObjectPath::new(&self.namespace, Some(&self.name))
    }

    /// A request's context for messages, `update leases default/my-app`: written out only when a
    /// message needs it, not on every renew.
    fn context(&self, verb: &'static str) -> RequestContext<'_> {
        RequestContext {
            verb,
            plural: K::PLURAL,
            namespace: &self.namespace,
            name: &self.name,
        }
    }

    fn decode_error(&self, message: String) -> Error {
        Error::Decode {
            context: format!("{} {}/{}", K::KIND, self.namespace, self.name),
            message,
        }
    }

    /// Decode a body, cache the object and return its record. (Error contexts are only built on errors.)
    ///
    /// The cache leaves out `metadata.managedFields`: the API server keeps an object's managed fields
    /// when an update omits them (so clients unaware of them never strip them), and they are often half
    /// of a Lease's bytes, sent on every renew and held for every lock.
    fn accept(&mut self, answer: Answer) -> Result<VersionedRecord> {
        self.server_date = answer.date;
        let body = &answer.body[..];
        let mut object: Value = serde_json::from_slice(body)
            .map_err(|e| self.decode_error(format!("not JSON: {e}")))?;
        let versioned = decode::<K>(&object).map_err(|m| self.decode_error(m))?;
        let managed = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("managedFields"));
        let stripped;
        let bytes = match managed {
            Some(_) => {
                stripped = to_vec(&object);
                &stripped
            }
            None => body,
        };
        self.cached.clear();
        self.cached.reserve_exact(bytes.len());
        self.cached.extend_from_slice(bytes);
        Ok(versioned)
    }

    /// The cached object, parsed (it was valid JSON when cached).
    fn cached_object(&self) -> Option<Value> {
        Some(&self.cached)
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice(b).ok())
    }
}

/// What a lock's request is about, for messages (see [`ObjectLock::context`]).
struct RequestContext<'a> {
    verb: &'static str,
    plural: &'static str,
    namespace: &'a str,
    name: &'a str,
}

impl fmt::Display for RequestContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RequestContext {
            verb,
            plural,
            namespace,
            name,
        } = self;
        write!(f, "{verb} {plural} {namespace}/{name}")
    }
}

/// The incarnation beside the record (an annotation on the object), set or removed. Written in place
/// when it is already there, as it is on every renew.
fn write_incarnation(object: &mut Value, incarnation: Option<&str>) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match incarnation {
        Some(i) => {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if !annotations.is_object() {
                *annotations = Value::Object(Default::default());
            }
            if let Some(map) = annotations.as_object_mut() {
                match map.get_mut(INCARNATION_ANNOTATION) {
                    Some(Value::String(s)) if s == i => {}
                    Some(old) => *old = json!(i),
                    None => {
                        map.insert(INCARNATION_ANNOTATION.to_string(), json!(i));
                    }
                }
            }
        }
        None => {
            if let Some(map) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                map.remove(INCARNATION_ANNOTATION);
            }
        }
    }
}

/// Read the record and `resourceVersion` out of an object of kind `K`.
pub(crate) fn decode<K: LockObject>(
    object: &Value,
) -> std::result::Result<VersionedRecord, String> {
    let obj = object.as_object().ok_or("expected a JSON object")?;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != K::KIND {
            return Err(format!("expected kind {}, found {kind:?}", K::KIND));
        }
    }
    let resource_version = obj
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .ok_or("metadata.resourceVersion is missing")?
        .to_string();
    let mut record = K::read(object)?;
    record.incarnation = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(INCARNATION_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(VersionedRecord {
        record,
        resource_version,
    })
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value always serializes")
}

impl<K: LockObject> Lock for ObjectLock<K> {
    fn get(&mut self, timeout: Duration) -> Result<Option<VersionedRecord>> {
        let answer = self
            .client
            .get(&self.item_path(), timeout, &self.context("get"));
        match answer {
            Ok(answer) => self.accept(answer).map(Some),
            Err(e) if e.is_not_found() => {
                self.cached = Vec::new();
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn create(
        &mut self,
        record: &LeaderElectionRecord,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        let mut object = json!({
            "apiVersion": K::API_VERSION,
            "kind": K::KIND,
            "metadata": {"name": &*self.name, "namespace": &*self.namespace},
        });
        self.write(&mut object, record);
        let answer = self.client.post(
            &ObjectPath::<K>::new(&self.namespace, None),
            &to_vec(&object),
            timeout,
            &self.context("create"),
        )?;
        self.accept(answer)
    }

    fn update(
        &mut self,
        record: &LeaderElectionRecord,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<VersionedRecord> {
        // Without a cached object (never read by this lock), the record alone is written.
        let mut object = self.cached_object().unwrap_or_else(|| {
            json!({
                "apiVersion": K::API_VERSION,
                "kind": K::KIND,
                "metadata": {"name": &*self.name, "namespace": &*self.namespace},
            })
        });
        self.write(&mut object, record);
        // The version the election judged, whatever the cache holds.
        if object["metadata"]["resourceVersion"].as_str() != Some(resource_version) {
            object["metadata"]["resourceVersion"] = json!(resource_version);
        }
        let answer = self.client.put(
            &self.item_path(),
            &to_vec(&object),
            timeout,
            &self.context("update"),
        )?;
        self.accept(answer)
    }

    fn identity(&self) -> &str {
        &self.identity
    }

    fn describe(&self) -> String {
        format!("{} {}/{}", K::PLURAL, self.namespace, self.name)
    }

    fn server_date(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.server_date.as_ref().and_then(ServerDate::parse)
    }

    fn record_time_resolution(&self) -> Duration {
        K::TIME_RESOLUTION
    }

    fn object_ref(&self) -> Option<ObjectReference> {
        Some(ObjectReference {
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            uid: self
                .cached_object()
                .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string)),
        })
    }
}
