//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>), parsed once.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The header names, lower case as HTTP/2 sends them.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// W3C: a vendor must propagate at least 512 characters of `tracestate`, and
/// may drop it when longer. We drop it, so a caller can't make us copy a
/// large header onto every outbound call.
const MAX_TRACESTATE: usize = 512;

/// A request's trace context: the two headers, as received or to be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// Picks the two headers out of `(name, value)` pairs (any case). A repeated
    /// `traceparent` is ambiguous, so it counts as none; repeated `tracestate`
    /// values are joined, as the spec says lists may be split.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        // One pass, no intermediate lists: this runs on every request.
        let mut parent: Option<&str> = None;
        let mut repeated = false;
        let mut state = String::new();
        for (name, value) in pairs {
            if name.eq_ignore_ascii_case(TRACEPARENT) {
                repeated |= parent.is_some();
                parent = Some(value.trim());
            } else if name.eq_ignore_ascii_case(TRACESTATE) {
                let value = value.trim();
                if !value.is_empty() && state.len() <= MAX_TRACESTATE {
                    if !state.is_empty() {
                        state.push(',');
                    }
                    state.push_str(value);
                }
            }
        }
        let traceparent = parent.filter(|_| !repeated).map(str::to_owned);
        let tracestate = Some(state)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE && traceparent.is_some());
        Self {
            traceparent,
            tracestate,
        }
    }

    /// The remote parent these headers describe; an empty context (start a new
    /// trace) when they are absent or malformed.
    pub fn context(&self) -> Context {
        // What the propagator gives without a traceparent, without its parsing.
        if self.traceparent.is_none() {
            return Context::current();
        }
        TraceContextPropagator::new().extract(self)
    }

    /// The headers that carry `cx` to the next hop; empty when `cx` has no
    /// valid span.
    pub fn of(cx: &Context) -> Self {
        let mut headers = Self::default();
        TraceContextPropagator::new().inject_context(cx, &mut headers);
        headers
    }

    /// `(name, value)` pairs to add to an outbound request.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (TRACEPARENT, self.traceparent.as_deref()),
            (TRACESTATE, self.tracestate.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

impl Extractor for TraceHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_becomes_the_remote_parent() {
        let h = TraceHeaders::from_pairs([("TraceParent", PARENT), ("tracestate", "a=1")]);
        let cx = h.context();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_valid() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        // And it goes out again unchanged.
        assert_eq!(TraceHeaders::of(&cx), h);
    }

    #[test]
    fn malformed_repeated_or_missing_headers_start_a_new_trace() {
        for pairs in [
            vec![],
            vec![("traceparent", "00-zz-b7ad6b7169203331-01")],
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
            vec![("traceparent", PARENT), ("traceparent", PARENT)],
            vec![("tracestate", "a=1")],
        ] {
            let h = TraceHeaders::from_pairs(pairs.clone());
            assert!(
                !h.context().span().span_context().is_valid(),
                "{pairs:?} gave a parent"
            );
        }
    }

    #[test]
    fn an_oversized_tracestate_is_dropped() {
        let big = "k=".to_owned() + &"v".repeat(600);
        let h = TraceHeaders::from_pairs([("traceparent", PARENT), ("tracestate", big.as_str())]);
        assert_eq!(h.tracestate, None);
        assert!(h.traceparent.is_some());
    }
}
