//! The last runs' spans, bounded: at most [`MAX_TRACES`] traces (the oldest go
//! first), [`MAX_SPANS_PER_TRACE`] spans each, and attribute values cut at
//! [`MAX_VALUE_CHARS`], so a chatty or hostile exporter can't grow it.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

pub const MAX_TRACES: usize = 100;
pub const MAX_SPANS_PER_TRACE: usize = 1000;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_VALUE_CHARS: usize = 4096;

/// One span as `GET /api/traces/{id}` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SpanRecord {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// `null` for a root span.
    pub parent_span_id: Option<String>,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl SpanRecord {
    /// Failed, not counting Key Vault's expected 401 challenge.
    pub fn failed(&self) -> bool {
        self.status == "error"
            && self.attributes.get("app.challenge") != Some(&serde_json::Value::Bool(true))
    }
}

/// A run in the list.
#[derive(Clone, Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The earliest span's name (the host → app1 call for a run).
    pub root: String,
    pub services: Vec<String>,
    pub span_count: usize,
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub error: bool,
}

#[derive(Default)]
struct Inner {
    /// Trace ids, oldest first.
    order: VecDeque<String>,
    traces: HashMap<String, Vec<SpanRecord>>,
}

/// Shared by the receiver and the readers.
#[derive(Default)]
pub struct TraceStore {
    inner: Mutex<Inner>,
}

impl TraceStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds spans, evicting the oldest traces beyond [`MAX_TRACES`]. Spans past
    /// a trace's limit are dropped; returns how many were.
    pub fn insert(&self, spans: impl IntoIterator<Item = SpanRecord>) -> usize {
        let mut inner = self.inner.lock().expect("trace store poisoned");
        let mut dropped = 0;
        for mut span in spans {
            bound(&mut span.attributes);
            let id = span.trace_id.clone();
            if !inner.traces.contains_key(&id) {
                inner.order.push_back(id.clone());
                while inner.order.len() > MAX_TRACES {
                    if let Some(old) = inner.order.pop_front() {
                        inner.traces.remove(&old);
                    }
                }
            }
            let trace = inner.traces.entry(id).or_default();
            if trace.len() >= MAX_SPANS_PER_TRACE {
                dropped += 1;
                continue;
            }
            trace.push(span);
        }
        dropped
    }

    /// A trace's spans in start order.
    pub fn spans(&self, trace_id: &str) -> Option<Vec<SpanRecord>> {
        let inner = self.inner.lock().expect("trace store poisoned");
        let mut spans = inner.traces.get(trace_id)?.clone();
        spans.sort_by_key(|s| (s.start_unix_nano, s.end_unix_nano));
        Some(spans)
    }

    /// Every stored trace, newest first.
    pub fn summaries(&self) -> Vec<TraceSummary> {
        let inner = self.inner.lock().expect("trace store poisoned");
        let mut out: Vec<TraceSummary> = inner
            .order
            .iter()
            .filter_map(|id| {
                let spans = inner.traces.get(id)?;
                let first = spans.iter().min_by_key(|s| s.start_unix_nano)?;
                let start = first.start_unix_nano;
                let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
                let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
                services.sort();
                services.dedup();
                Some(TraceSummary {
                    trace_id: id.clone(),
                    root: first.name.clone(),
                    services,
                    span_count: spans.len(),
                    start_unix_nano: start,
                    duration_ms: end.saturating_sub(start) as f64 / 1e6,
                    error: spans.iter().any(SpanRecord::failed),
                })
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_nano));
        out
    }
}

fn bound(attributes: &mut BTreeMap<String, serde_json::Value>) {
    while attributes.len() > MAX_ATTRIBUTES {
        attributes.pop_last();
    }
    for value in attributes.values_mut() {
        if let serde_json::Value::String(s) = value
            && s.chars().count() > MAX_VALUE_CHARS
        {
            *s = s.chars().take(MAX_VALUE_CHARS).collect::<String>() + "…";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: usize, n: usize) -> SpanRecord {
        SpanRecord {
            service: "app1".into(),
            name: format!("s{n}"),
            trace_id: format!("{trace:032x}"),
            span_id: format!("{n:016x}"),
            parent_span_id: None,
            kind: "internal",
            status: "unset",
            status_message: None,
            start_unix_nano: n as u64,
            end_unix_nano: n as u64 + 10,
            attributes: BTreeMap::from([("big".into(), "x".repeat(10_000).into())]),
        }
    }

    #[test]
    fn the_store_keeps_the_last_traces_and_bounds_each() {
        let store = TraceStore::new();
        for t in 0..MAX_TRACES + 20 {
            store.insert((0..3).map(|n| span(t, n)));
        }
        let list = store.summaries();
        assert_eq!(list.len(), MAX_TRACES);
        assert!(
            store.spans(&format!("{:032x}", 0)).is_none(),
            "the oldest went first"
        );
        let newest = format!("{:032x}", MAX_TRACES + 19);
        assert_eq!(store.spans(&newest).unwrap().len(), 3);

        let dropped = store.insert((0..MAX_SPANS_PER_TRACE + 5).map(|n| span(7_000, n)));
        assert_eq!(dropped, 5);
        let spans = store.spans(&format!("{:032x}", 7_000)).unwrap();
        assert_eq!(spans.len(), MAX_SPANS_PER_TRACE);
        let big = spans[0].attributes["big"].as_str().unwrap();
        assert_eq!(big.chars().count(), MAX_VALUE_CHARS + 1);
    }
}
