//! One trace from the caller through the host, app1 and the gate to app2, as
//! devstack's viewer received it over OTLP/HTTP (`DEVSTACK_TRACES_URL`).

use crate::helpers::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const CALLER_SPAN: &str = "b7ad6b7169203331";

/// `GET $DEVSTACK_TRACES_URL/api/traces/{id}` once app1's server span and
/// app2's have arrived.
async fn spans_of(trace_id: &str) -> Vec<Value> {
    let url = format!(
        "{}/api/traces/{trace_id}",
        world().get("DEVSTACK_TRACES_URL")
    );
    let fetch = || async {
        let got = send(reqwest::Method::GET, url.clone(), None).await;
        (got.status == 200)
            .then(|| serde_json::from_str::<Value>(&got.text()).unwrap()["spans"].clone())
            .and_then(|spans| spans.as_array().cloned())
            .unwrap_or_default()
    };
    for _ in 0..150 {
        let spans = fetch().await;
        let has = |service: &str| {
            spans
                .iter()
                .any(|s| s["service"] == service && s["kind"] == "server")
        };
        if has("app1") && has("app2") {
            // app2's batch may hold a straggler: one more interval.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return fetch().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the trace {trace_id} never arrived with spans from app1 and app2");
}

#[tokio::test]
async fn one_flow_is_one_linked_trace_from_app1_to_app2_in_both_host_modes() {
    for (mode, base) in modes() {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let got = client()
            .post(format!("{base}/api/flow"))
            .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{mode}: {}", got.text().await.unwrap());
        let spans = spans_of(&trace_id).await;

        let ids: HashSet<&str> = spans
            .iter()
            .map(|s| s["span_id"].as_str().unwrap())
            .collect();
        for s in &spans {
            assert_eq!(s["trace_id"], trace_id.as_str(), "{mode}: {s}");
            for key in ["service", "name", "span_id", "kind", "status", "attributes"] {
                assert!(!s[key].is_null(), "{mode}: {key} missing in {s}");
            }
            // Linked: every span's parent is in the trace, or is the caller's span.
            let parent = s["parent_span_id"]
                .as_str()
                .expect("no span is a root here");
            assert!(
                ids.contains(parent) || parent == CALLER_SPAN,
                "{mode}: {} has a parent outside the trace",
                s["name"]
            );
        }
        let one = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
            spans
                .iter()
                .find(|s| pred(s))
                .unwrap_or_else(|| panic!("{mode}: no {what} span in {spans:#?}"))
                .clone()
        };
        let server = one(
            &|s| s["service"] == "app1" && s["kind"] == "server",
            "app1 server",
        );
        assert_eq!(server["parent_span_id"], CALLER_SPAN, "{mode}");
        assert_eq!(server["name"], "POST /api/flow");
        assert!(server["attributes"]["faas.invocation_id"].is_string());
        let app2_server = one(
            &|s| s["service"] == "app2" && s["kind"] == "server",
            "app2 server",
        );
        let app2_call = one(
            &|s| s["kind"] == "client" && s["attributes"]["app.stage"] == "app2",
            "app1 → app2 client",
        );
        assert_eq!(
            app2_server["parent_span_id"], app2_call["span_id"],
            "{mode}: app2 continues app1's call through the gate"
        );
        assert_eq!(app2_call["attributes"]["http.response.status_code"], 200);
        assert!(
            app2_call["attributes"]["app.token.audience"]
                .as_str()
                .unwrap()
                .starts_with("api://")
        );
        // The audit blob is new each run, so its calls always reach Storage.
        let storage = one(
            &|s| s["kind"] == "client" && s["attributes"]["app.stage"] == "storage",
            "storage client",
        );
        assert!(
            storage["attributes"]["url.full"]
                .as_str()
                .unwrap()
                .contains("/audit/")
        );
        assert_eq!(
            storage["attributes"]["app.token.audience"],
            "https://storage.azure.com"
        );
        // Token requests are spans, cached or not. (The SDK clients keep their
        // own token between requests, so a warm Blob client asks no more.)
        let app2_audience = app2_call["attributes"]["app.token.audience"].clone();
        for audience in [Value::from("https://vault.azure.net"), app2_audience] {
            one(
                &|s| s["name"] == "get token" && s["attributes"]["app.token.audience"] == audience,
                &audience.to_string(),
            );
        }
        for step in ["keyvault", "app2", "audit-write", "audit-read"] {
            one(&|s| s["attributes"]["app.step"] == step, step);
        }
    }
}

#[tokio::test]
async fn the_viewer_answers_bad_ids_and_unknown_traces_with_problems() {
    let base = world().get("DEVSTACK_TRACES_URL");
    let bad = send(
        reqwest::Method::GET,
        format!("{base}/api/traces/not-hex"),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    let unknown = send(
        reqwest::Method::GET,
        format!("{base}/api/traces/{}", "0".repeat(31) + "1"),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    let not_otlp = client()
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(not_otlp.status(), 400);
    let wrong_type = client()
        .post(format!("{base}/v1/traces"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
}

#[tokio::test]
async fn the_viewer_takes_otlp_json_too() {
    let base = world().get("DEVSTACK_TRACES_URL");
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "curl"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": "0102030405060708", "name": "hand-made",
            "kind": 3, "startTimeUnixNano": "1000", "endTimeUnixNano": "2000",
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "403"}}],
            "status": {"code": 2, "message": "refused"}
        }]}]
    }]});
    let got = client()
        .post(format!("{base}/v1/traces"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "{}", got.text().await.unwrap());
    let spans: Value = client()
        .get(format!("{base}/api/traces/{trace_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let span = &spans["spans"][0];
    assert_eq!(span["service"], "curl");
    assert_eq!(span["kind"], "client");
    assert_eq!(span["status"], "error");
    assert_eq!(span["parent_span_id"], Value::Null);
    assert_eq!(span["attributes"]["http.response.status_code"], 403);
}
