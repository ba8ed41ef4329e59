//! A raw HTTP client for tests that look at the wire: requests as given, answers as they come.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// One answer: the status, the Status `reason` if it is one, the JSON body (or `Null`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub reason: Option<String>,
    pub body: Value,
    pub date: Option<String>,
}

pub struct Raw {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Raw {
    pub fn new(base: &str, ca_pem: Option<&str>, token: Option<&str>) -> Raw {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = TlsConfig::builder().unversioned_rustls_crypto_provider(provider);
        if let Some(pem) = ca_pem {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem.as_bytes())
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Raw {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    /// Send `method path` with an optional JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) | ("DELETE", None) => {
                let mut r = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.header("Content-Type", "application/json")
                    .send(body.map(Value::to_string).unwrap_or_default())
            }
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reason = (body["kind"] == "Status")
            .then(|| body["reason"].as_str().map(str::to_string))
            .flatten();
        Answer {
            status,
            reason,
            body,
            date,
        }
    }

    /// Open a watch on `path` and collect its events until `n` arrived, `quiet` passes without one, or
    /// `max` passes; `during` runs once the stream is open (to cause the events).
    pub fn watch(
        &self,
        path: &str,
        n: usize,
        quiet: Duration,
        during: impl FnOnce(),
    ) -> (u16, Vec<Value>) {
        let url = format!("{}{path}", self.base);
        let mut r = self.agent.get(&url);
        if let Some(t) = &self.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let response = r
            .config()
            .timeout_global(Some(Duration::from_secs(15)))
            .timeout_recv_body(Some(quiet))
            .build()
            .call()
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.into_body().read_to_string().unwrap_or_default();
            return (
                status,
                vec![serde_json::from_str(&text).unwrap_or(Value::Null)],
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let body = response.into_body().into_reader();
            for line in std::io::BufReader::new(body).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        during();
        let mut events = Vec::new();
        let end = Instant::now() + Duration::from_secs(12);
        while events.len() < n && Instant::now() < end {
            match rx.recv_timeout(quiet) {
                Ok(v) => events.push(v),
                Err(_) => break,
            }
        }
        drop(rx);
        drop(reader);
        (status, events)
    }
}
