//! The hostile-input suite: what an attacker with a function key (or none)
//! sends through the host stand-in in both modes, straight at the handler, at
//! the EasyAuth gate and at app2. For every case:
//!
//! * no 5xx, except a 502 or 503 problem that names its stage;
//! * a handler 4xx is `application/problem+json`;
//! * no token, secret value, secret hash, function key or identity header in
//!   any body, nor in the handlers' logs;
//!
//! and afterwards the handler still answers, with bounded memory growth.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Where a case is sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// Through the host stand-in, in forward and in payload mode.
    Host,
    /// Straight at the handler's port, bypassing the host.
    Handler,
    /// The EasyAuth gate in front of app2.
    Gate,
    /// app2's own port, as if EasyAuth were off or bypassed.
    App2,
}

#[derive(Clone)]
struct Case {
    target: Target,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, Vec<u8>)>,
}

fn case(target: Target, method: Method, path: impl Into<String>) -> Case {
    Case {
        target,
        method,
        path: path.into(),
        headers: vec![],
        body: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }
}

fn forged_principal() -> String {
    STANDARD.encode(
        json!({"auth_typ": "aad", "claims": [
            {"typ": "appid", "val": "attacker"},
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "00000000-0000-4000-8000-000000000000"},
            {"typ": "roles", "val": "App2.Access"}
        ]})
        .to_string(),
    )
}

fn unsigned_token() -> String {
    let claims = json!({"aud": "api://x", "iss": "https://sts.windows.net/x/", "roles": ["App2.Access"], "exp": 4102444800u64});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// What goes through the host, in both modes.
fn through_the_host() -> Vec<Case> {
    use Method as M;
    use Target::Host as H;
    let long = "a".repeat(4000);
    vec![
        // Secrets: malformed names and versions.
        case(H, M::GET, "/api/secrets/bad_name"),
        case(H, M::GET, "/api/secrets/a%00b"),
        case(H, M::GET, "/api/secrets/a%0D%0ASet-Cookie:x=1"),
        case(H, M::GET, format!("/api/secrets/{}", "a".repeat(128))),
        case(H, M::GET, "/api/secrets/app1-demo-secret/not-a-version"),
        case(H, M::GET, "/api/secrets/app1-demo-secret/%2e%2e"),
        case(H, M::GET, "/api/secrets/..%2f..%2fhealth"),
        case(H, M::GET, "/api/secrets/%E2%80%AEevil"),
        // Blobs: the host's own containers, the audit trail, traversal, bad types.
        case(H, M::GET, "/api/blobs/azure-webjobs-secrets"),
        case(H, M::GET, "/api/blobs/azure-webjobs-hosts/locks/x"),
        case(
            H,
            M::PUT,
            "/api/blobs/deploymentpackage/released-package.zip",
        )
        .body("application/zip", b"PK\x03\x04 not really".to_vec()),
        case(
            H,
            M::DELETE,
            "/api/blobs/deploymentpackage/released-package.zip",
        ),
        case(H, M::PUT, "/api/blobs/audit/flow/forged.json")
            .body("application/json", b"{}".to_vec()),
        case(H, M::DELETE, "/api/blobs/audit/flow/forged.json"),
        case(H, M::PUT, "/api/blobs/hostile/..%2f..%2fescape").body("text/plain", b"x".to_vec()),
        case(H, M::PUT, "/api/blobs/hostile/a%5Cb").body("text/plain", b"x".to_vec()),
        case(H, M::PUT, "/api/blobs/hostile/ctl%01name").body("text/plain", b"x".to_vec()),
        case(H, M::PUT, "/api/blobs/hostile/typed").body("not a mime type", b"x".to_vec()),
        case(H, M::GET, "/api/blobs/hostile?max=999999"),
        case(H, M::GET, "/api/blobs/hostile?max=-1"),
        case(H, M::GET, "/api/blobs/hostile?marker=%00%01"),
        case(H, M::GET, "/api/blobs/hostile?max=1&max=2"),
        case(H, M::GET, "/api/blobs/$root"),
        case(H, M::GET, "/api/blobs/Upper-Case"),
        case(H, M::POST, "/api/blobs/hostile/x"),
        // Token: resources outside the allow-list, variants, bad selectors.
        case(
            H,
            M::GET,
            "/api/token?resource=https://management.azure.com",
        ),
        case(
            H,
            M::GET,
            "/api/token?resource=https://vault.azure.net.evil.example",
        ),
        case(H, M::GET, "/api/token?resource=HTTPS://VAULT.AZURE.NET/"),
        case(
            H,
            M::GET,
            "/api/token?resource=https://vault.azure.net&resource=x",
        ),
        case(H, M::GET, "/api/token?resource=%0A"),
        case(H, M::GET, format!("/api/token?resource=https://{long}")),
        case(H, M::GET, "/api/token?scope=a/.default&scope=b/.default"),
        case(
            H,
            M::GET,
            "/api/token?resource=https://vault.azure.net&client_id=not-a-guid",
        ),
        case(
            H,
            M::GET,
            "/api/token?resource=https://vault.azure.net&mi_res_id=/../../x",
        ),
        case(H, M::GET, "/api/token?check=../../etc/passwd"),
        case(
            H,
            M::GET,
            "/api/token?resource=https://vault.azure.net&object_id=0f0f0f0f-0000-4000-8000-000000000000",
        ),
        // app2: traversal, absolute URLs, smuggled keys and principals.
        case(H, M::GET, "/api/app2/..%2f..%2fetc/passwd"),
        case(H, M::GET, "/api/app2/http:%2f%2fevil.example/x"),
        case(H, M::GET, "/api/app2/%2e%2e/%2e%2e/x"),
        case(H, M::GET, "/api/app2/a%5Cb"),
        case(H, M::GET, "/api/app2/api/whoami?CODE=stolen&Code=stolen"),
        case(H, M::GET, "/api/app2/api/whoami")
            .header("X-MS-CLIENT-PRINCIPAL", forged_principal())
            .header("Authorization", format!("Bearer {}", unsigned_token())),
        // Flow, with a forged invocation id and a junk body.
        case(H, M::POST, "/api/flow")
            .header(
                "X-Azure-Functions-InvocationId",
                "<script>alert(1)</script>",
            )
            .body("application/json", b"{\"junk\": [1,2,3]}".to_vec()),
        // Routing and bodies.
        case(H, M::GET, "/api/secrets/../health"),
        case(H, M::GET, "/api/nosuchfunction"),
        case(H, M::PUT, "/api/blobs/hostile/too-big")
            .body("text/plain", vec![b'z'; 1024 * 1024 + 1]),
    ]
}

/// Invocation envelopes and paths sent straight to the handler's port.
fn at_the_handler() -> Vec<Case> {
    use Method as M;
    use Target::Handler as D;
    let envelope = |v: Value| v.to_string().into_bytes();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        case(D, M::POST, "/secrets").body("application/json", b"not json".to_vec()),
        case(D, M::POST, "/secrets").body("application/json", b"[]".to_vec()),
        case(D, M::POST, "/secrets").body("application/json", envelope(json!({"Data": 5}))),
        case(D, M::POST, "/secrets").body("application/json", envelope(json!({"Data": {"req": {"Method": "GE T"}}}))),
        case(D, M::POST, "/secrets").body("application/json", envelope(json!({"Data": {"req": {"Method": 5}}}))),
        case(D, M::POST, "/secrets").body("application/json", envelope(json!({"Data": {"req": {
            "Method": "GET", "Params": {"name": {"nested": [1]}}, "Headers": {"bad name": ["x"], "x": ["a\r\nb"]}
        }}}))),
        case(D, M::POST, "/blobs").body("application/json", envelope(json!({"Data": {"req": {
            "Method": "PUT", "Params": {"container": "azure-webjobs-secrets", "name": "host.json"},
            "Headers": {"Content-Type": ["application/octet-stream"]}, "Body": "AAAA"
        }}}))),
        case(D, M::POST, "/blobs").body("application/json", envelope(json!({"Data": {"req": {
            "Method": "PUT", "Params": {"container": "hostile", "name": "x"},
            "Headers": {"Content-Type": ["application/octet-stream"]}, "Body": "***not base64***"
        }}}))),
        case(D, M::POST, "/token").body("application/json", envelope(json!({"Data": {"req": {
            "Method": "GET", "Query": "{not json"
        }}}))),
        case(D, M::POST, "/token").body("application/json", envelope(json!({"Data": {"req": {
            "Method": "GET", "Query": {"resource": "https://management.azure.com"}
        }}}))),
        case(D, M::POST, "/secrets").body("application/json", deep.into_bytes()),
        case(D, M::POST, "/secrets").body("application/json", vec![b' '; 20 * 1024 * 1024]),
        case(D, M::POST, "/NoSuchFunction").body("application/json", envelope(json!({"Data": {}}))),
        case(D, M::GET, "/api/secrets/%2e%2e%2fhealth"),
        case(D, M::GET, "/api/health").header("X-Azure-Functions-InvocationId", "forged-invocation-id-7731"),
        case(D, M::GET, "/api/blobs/audit/..%2F..%2Fdeploymentpackage"),
        case(D, M::DELETE, "/api/blobs/audit/flow/x.json"),
        case(D, M::GET, "/api/token?resource=https://vault.azure.net%00"),
    ]
}

/// What the gate and app2 get without a valid token.
fn at_app2(target: Target) -> Vec<Case> {
    use Method as M;
    vec![
        case(target, M::GET, "/api/whoami"),
        case(target, M::GET, "/api/whoami").header("X-MS-CLIENT-PRINCIPAL", forged_principal()),
        case(target, M::GET, "/api/whoami").header("X-MS-CLIENT-PRINCIPAL-ID", "attacker"),
        case(target, M::GET, "/api/whoami")
            .header("Authorization", format!("Bearer {}", unsigned_token())),
        case(target, M::GET, "/api/whoami").header("Authorization", "Bearer not.a.jwt"),
        case(target, M::GET, "/api/whoami").header("Authorization", "Bearer "),
        case(target, M::GET, "/api/whoami")
            .header("Authorization", format!("Bearer {}", "A".repeat(16 * 1024))),
        case(target, M::GET, "/api/whoami")
            .header("Authorization", "Basic YWRtaW46YWRtaW4=")
            .header("X-MS-TOKEN-AAD-ACCESS-TOKEN", unsigned_token()),
        case(target, M::POST, "/api/whoami").body("application/json", b"{}".to_vec()),
        case(target, M::GET, "/api/health/%2e%2e/whoami"),
    ]
}

/// What must never appear in a body or a log line.
fn secrets(w: &World) -> Vec<(String, String)> {
    use sha2::{Digest, Sha256};
    let value = "devstack-demo-value-not-a-real-secret";
    let hash: String = Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = vec![
        ("secret value".to_owned(), value.to_owned()),
        ("secret hash".to_owned(), hash),
        (
            "identity header".to_owned(),
            w.get("IDENTITY_HEADER").to_owned(),
        ),
        ("MSI secret".to_owned(), w.get("MSI_SECRET").to_owned()),
        ("a JWT".to_owned(), "eyJ0eXAi".to_owned()),
        ("a JWT".to_owned(), "eyJhbGci".to_owned()),
    ];
    out.extend(
        w.keys
            .iter()
            .map(|k| ("a function key".to_owned(), k.clone())),
    );
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_input_gets_clean_answers_and_leaks_nothing() {
    let w = world();
    let handler_port = w.hosts[0]
        .worker
        .ready(Duration::from_secs(30))
        .await
        .expect("handler up");
    let pid = w.hosts[0].worker.pid().expect("handler pid");
    let handler = format!("http://127.0.0.1:{handler_port}");
    let rss_before = rss_kib(pid);

    let mut cases: Vec<(String, Case)> = vec![];
    for c in through_the_host() {
        for (_, base) in modes() {
            cases.push((base.to_owned(), c.clone()));
        }
    }
    cases.extend(at_the_handler().into_iter().map(|c| (handler.clone(), c)));
    cases.extend(
        at_app2(Target::Gate)
            .into_iter()
            .map(|c| (w.get("APP2_BASE_URL").to_owned(), c)),
    );
    cases.extend(
        at_app2(Target::App2)
            .into_iter()
            .map(|c| (w.app2_direct.clone(), c)),
    );
    assert!(cases.len() >= 80, "only {} cases", cases.len());

    let http = handler::http_client::build_with(
        Some(std::path::Path::new(w.get("DEVSTACK_CA_CERT"))),
        Duration::from_secs(60),
    )
    .unwrap();
    let secrets = secrets(w);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for (base, c) in &cases {
        let what = format!("{:?} {} {}", c.target, c.method, c.path);
        let mut req = http.request(c.method.clone(), format!("{base}{}", c.path));
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        if let Some((ct, body)) = &c.body {
            req = req.header("content-type", *ct).body(body.clone());
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut status = res.status().as_u16();
        let mut content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = res.text().await.unwrap_or_default();
        // A payload-mode reply carries the function's answer inside Outputs.res.
        if c.target == Target::Handler && status == 200 && !c.path.starts_with("/api/") {
            let outer: Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
            let res = &outer["Outputs"]["res"];
            status = res["statusCode"].as_u64().unwrap_or(0) as u16;
            content_type = res["headers"]["Content-Type"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            body = res["body"].as_str().unwrap_or_default().to_owned();
        }
        *seen.entry(status).or_default() += 1;
        assert!(status != 0, "{what}: no status");
        let from_handler = matches!(c.target, Target::Host | Target::Handler) && !body.is_empty();
        if status >= 500 {
            assert!(
                matches!(status, 502 | 503) && from_handler,
                "{what}: a {status} that is not an upstream problem: {body}"
            );
            let problem: Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
            assert!(
                problem["stage"].is_string(),
                "{what}: names no stage: {body}"
            );
        }
        if from_handler && status >= 400 {
            assert!(
                content_type.starts_with("application/problem+json"),
                "{what}: {content_type}: {body}"
            );
        }
        if matches!(c.target, Target::Gate | Target::App2) {
            assert!(
                status == 401 || status == 403 || status == 404,
                "{what}: app2 answered {status} without a valid token: {body}"
            );
        }
        for (name, secret) in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "{what}: {name} in the body"
            );
        }
    }

    // The handler is alive and its memory did not run away.
    let health = http
        .get(format!("{handler}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the handler survived");
    let rss_after = rss_kib(pid);
    assert_eq!(
        w.hosts[0].worker.pid(),
        Some(pid),
        "the handler never restarted"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    eprintln!(
        "hostile input: {} cases, statuses {seen:?}, handler RSS {rss_before} → {rss_after} KiB",
        cases.len()
    );

    // Nothing secret in the logs either, nor any caller-sent invocation id.
    let logs = w.console();
    for (name, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{name} in the handler logs"
        );
    }
    for forged in ["<script>alert(1)</script>", "forged-invocation-id-7731"] {
        assert!(
            !logs.contains(forged),
            "a caller's invocation id {forged:?} reached the logs"
        );
    }
}

#[tokio::test]
async fn the_audit_record_carries_the_hosts_invocation_id_not_the_callers() {
    let base = &world().forward;
    let res = client()
        .post(format!("{base}/api/flow"))
        .header("X-Azure-Functions-InvocationId", "forged-by-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    let write = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "audit-write")
        .unwrap();
    let blob = write["detail"]["blob"].as_str().unwrap().to_owned();
    let record = get(format!("{base}/api/blobs/audit/{blob}")).await.json();
    let id = record["invocation_id"].as_str().unwrap();
    assert!(
        uuid::Uuid::try_parse(id).is_ok() && id.len() == 36,
        "{record}"
    );
    assert!(!record.to_string().contains("forged-by-the-caller"));
    assert!(record["secret"].get("value_sha256").is_none(), "{record}");
    assert!(record["secret"]["updated"].is_string(), "{record}");
}
