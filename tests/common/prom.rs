//! A strict reader of the Prometheus text exposition format (0.0.4), and a plain HTTP GET, for tests
//! of `/metrics` endpoints.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample: metric name, labels, value, and the family's declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub kind: String,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse exposition text: every line a `# HELP`, a `# TYPE` (before the family's samples, once), or a
/// sample of a declared family; label values quoted with `\\`, `\"` and `\n` escapes; numeric values.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line:?}", n + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (word, name, tail) = (parts.next(), parts.next(), parts.next());
            match (word, name) {
                (Some("HELP"), Some(name))
                    if valid_name(name)
                        && helps
                            .insert(name.into(), tail.unwrap_or("").into())
                            .is_some() =>
                {
                    return err("HELP twice");
                }
                (Some("TYPE"), Some(name)) if valid_name(name) => {
                    let kind = tail.unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return err("unknown type");
                    }
                    if out.iter().any(|s: &Sample| s.name == name) {
                        return err("TYPE after samples");
                    }
                    if types.insert(name.into(), kind.into()).is_some() {
                        return err("TYPE twice");
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return err("no value"),
        };
        if !valid_name(name) {
            return err("bad metric name");
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let Some(&(start, c)) = chars.peek() else {
                    return err("unterminated labels");
                };
                if c == '}' {
                    break start + 1;
                }
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if !valid_name(&key) || chars.next().map(|x| x.1) != Some('=') {
                    return err("bad label name");
                }
                if chars.next().map(|x| x.1) != Some('"') {
                    return err("label value not quoted");
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return err("bad escape"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => return err("unterminated label value"),
                    }
                }
                labels.insert(key, value);
                match chars.peek().map(|x| x.1) {
                    Some(',') => {
                        chars.next();
                    }
                    Some('}') => {}
                    _ => return err("expected , or }"),
                }
            };
            &body[end..]
        } else {
            rest
        };
        let mut fields = rest.trim_start().split(' ');
        let value = match fields.next().map(str::parse::<f64>) {
            Some(Ok(v)) => v,
            _ => return err("bad value"),
        };
        if fields.next().is_some_and(|t| t.parse::<i64>().is_err()) {
            return err("bad timestamp");
        }
        let Some(kind) = types.get(name) else {
            return err("a sample of an undeclared family");
        };
        out.push(Sample {
            name: name.into(),
            labels,
            value,
            kind: kind.clone(),
        });
    }
    Ok(out)
}

/// The value of `name{name="<lock>"}`.
pub fn value(samples: &[Sample], name: &str, lock: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.get("name").map(String::as_str) == Some(lock))
        .map(|s| s.value)
}

/// `GET path` over plain HTTP/1.1: status code, `Content-Type`, body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (code, content_type, body.to_string())
}
