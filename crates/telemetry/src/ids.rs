//! Trace ids without spans.
//!
//! When spans go nowhere (no exporter), building each one only to drop it is
//! most of what a request costs. An invocation then gets only its ids: the
//! caller's trace (or a new one) and a span id of its own, as the
//! OpenTelemetry context of its task. Log lines ([`crate::WithTraceIds`]) and
//! outbound `traceparent` headers read it, so the promise holds: every line
//! names its trace, and the next hop continues it.

use crate::TraceHeaders;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

/// The context of one unit of work that continues `caller`'s trace (or, with
/// no valid `traceparent`, starts one), with a fresh span id. Run the work in
/// it with [`opentelemetry::context::FutureExt::with_context`].
pub fn child_of(caller: &TraceHeaders) -> Context {
    let parent = caller.context();
    let remote = parent.span().span_context().clone();
    let span_id = SpanId::from(fastrand::u64(1..));
    let ids = if remote.is_valid() {
        SpanContext::new(
            remote.trace_id(),
            span_id,
            remote.trace_flags(),
            false,
            remote.trace_state().clone(),
        )
    } else {
        // Sampled, as the SDK's default sampler would have it: the next hop
        // records its part.
        SpanContext::new(
            TraceId::from(fastrand::u128(1..)),
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    Context::new().with_remote_span_context(ids)
}

/// The trace and span ids of the task's current context, if it has any.
pub fn current() -> Option<(TraceId, SpanId)> {
    let cx = Context::current();
    let ids = cx.span().span_context().clone();
    ids.is_valid().then(|| (ids.trace_id(), ids.span_id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::context::FutureExt;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn continues_the_callers_trace_with_a_span_id_of_its_own() {
        let caller = TraceHeaders {
            traceparent: Some(CALLER.into()),
            tracestate: Some("vendor=1".into()),
        };
        let (ids, sent) = async { (current(), TraceHeaders::of(&Context::current())) }
            .with_context(child_of(&caller))
            .await;
        let (trace, span) = ids.expect("ids inside");
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(span.to_string(), "00f067aa0ba902b7");
        let sent = sent.traceparent.unwrap();
        assert_eq!(sent, format!("00-{trace}-{span}-01"));
        assert!(current().is_none(), "nothing outside");
    }

    #[tokio::test]
    async fn starts_a_sampled_trace_without_a_valid_caller() {
        for caller in [
            TraceHeaders::default(),
            TraceHeaders {
                traceparent: Some("00-bad".into()),
                tracestate: None,
            },
        ] {
            let sent = async { TraceHeaders::of(&Context::current()) }
                .with_context(child_of(&caller))
                .await;
            let tp = sent.traceparent.unwrap();
            assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
            assert!(!tp.contains("4bf92f35"));
        }
    }
}
