//! Streaming a watch: the history since the asked version, then live changes and bookmarks, as
//! chunked JSON lines, until the timeout or the server stops.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Watch;
use crate::testing::Inner;
use crate::testing::store::status;

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
    use crate::sync::{lock, wait};
    let deadline = std::time::Instant::now() + watch.timeout;
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
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
            let current = store.selected(watch.resource, &watch.namespace, &watch.selector);
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
        let changes = store.changes_after(last, watch.resource, &watch.namespace, &watch.selector);
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
        store = wait(
            &inner.store_changed,
            store,
            Some(std::time::Duration::from_millis(100)),
        );
    }
    drop(store);
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}
