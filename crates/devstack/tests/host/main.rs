//! The Functions host stand-in against a scripted handler (fake_handler.py):
//! acceptance cases 1–29 of functions-host.md (case 30, packaging, is tested
//! with the package command); proxy mode's cases 31–40 are in `proxy.rs`.

mod proxy;

use devstack::host::worker::Status;
use devstack::host::{FunctionsHost, HostMode, HostOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Fixture {
    root: PathBuf,
    starts: PathBuf,
}

#[derive(Clone)]
struct AppSpec {
    forwarding: bool,
    /// More `customHandler` keys (proxying, or its misspellings).
    custom_handler: Value,
    route_prefix: &'static str,
    function_timeout: &'static str,
    init_timeout: &'static str,
}

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            forwarding: true,
            custom_handler: json!({}),
            route_prefix: "api",
            function_timeout: "00:05:00",
            init_timeout: "00:00:10",
        }
    }
}

fn write(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn http_function(root: &Path, name: &str, trigger: Value, extra_output: bool) {
    let mut bindings = vec![
        trigger,
        json!({"type": "http", "direction": "out", "name": "res"}),
    ];
    if extra_output {
        bindings.push(json!({"type": "queue", "direction": "out", "name": "msg", "queueName": "q", "connection": "AzureWebJobsStorage"}));
    }
    write(
        &root.join(name).join("function.json"),
        &json!({ "bindings": bindings }),
    );
}

fn fixture(spec: &AppSpec) -> Fixture {
    let root = std::env::temp_dir().join(format!("host-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host/fake_handler.py"),
        root.join("fake_handler.py"),
    )
    .unwrap();
    let mut host_json = json!({
        "version": "2.0",
        "customHandler": {
            "description": {
                "defaultExecutablePath": "python3",
                "workingDirectory": "",
                "arguments": ["fake_handler.py", "--conn", "%FAKE_DB%", "--x %UNSET%"]
            },
            "enableForwardingHttpRequest": spec.forwarding,
            "initializationTimeout": spec.init_timeout
        },
        "extensions": { "http": { "routePrefix": spec.route_prefix } },
        "functionTimeout": spec.function_timeout
    });
    for (k, v) in spec.custom_handler.as_object().into_iter().flatten() {
        host_json["customHandler"][k] = v.clone();
    }
    write(&root.join("host.json"), &host_json);
    write(
        &root.join("local.settings.json"),
        &json!({"IsEncrypted": false, "Values": {"FUNCTIONS_WORKER_RUNTIME": "custom", "FROM_VALUES": "v", "FAKE_DB": "abc", "FROM_PLATFORM": "values-lose"}}),
    );
    let trigger = |auth: &str, methods: Value, route: Option<&str>| {
        let mut t = json!({"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": auth, "methods": methods});
        if let Some(r) = route {
            t["route"] = json!(r);
        }
        t
    };
    http_function(
        &root,
        "echo",
        trigger("function", json!([]), Some("echo/{*rest}")),
        false,
    );
    http_function(
        &root,
        "items",
        trigger("function", json!(["get"]), Some("items/{id:int}/{name?}")),
        false,
    );
    http_function(
        &root,
        "getonly",
        trigger("function", json!(["get"]), None),
        false,
    );
    http_function(
        &root,
        "queued",
        trigger("function", json!(["get"]), None),
        true,
    );
    http_function(
        &root,
        "adminfn",
        trigger("admin", json!(["get"]), None),
        false,
    );
    http_function(
        &root,
        "anon",
        trigger("anonymous", json!(["get"]), None),
        false,
    );
    write(
        &root.join("2bad").join("function.json"),
        &json!({"bindings": [trigger("anonymous", json!([]), None)]}),
    );
    let starts = root.join("starts.txt");
    Fixture { root, starts }
}

async fn start(
    spec: &AppSpec,
    mode: HostMode,
    enforce_keys: bool,
    fake_mode: &str,
) -> (FunctionsHost, Fixture) {
    let f = fixture(spec);
    let host = FunctionsHost::start(HostOptions {
        app_root: f.root.clone(),
        port: 0,
        mode,
        enforce_keys,
        executable: None,
        platform_env: vec![
            ("FAKE_STARTS".into(), f.starts.display().to_string()),
            ("FAKE_MODE".into(), fake_mode.into()),
            ("FROM_PLATFORM".into(), "platform".into()),
        ],
    })
    .await
    .expect("host starts");
    (host, f)
}

async fn ready(spec: &AppSpec, mode: HostMode) -> (FunctionsHost, Fixture) {
    let (host, f) = start(spec, mode, false, "").await;
    assert!(
        host.ready(Duration::from_secs(20)).await,
        "{:?}",
        host.shared.worker.status()
    );
    (host, f)
}

fn client() -> reqwest::Client {
    devstack::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(host: &FunctionsHost, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", host.url))
        .send()
        .await
        .unwrap()
}

async fn echo(host: &FunctionsHost, path: &str) -> Value {
    let res = get(host, path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

fn header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

fn starts(f: &Fixture) -> usize {
    std::fs::read_to_string(&f.starts)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn case_1_3_environment_working_directory_and_arguments() {
    let (host, f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    let e = echo(&host, "/api/echo/x").await;
    let env = &e["env"];
    let port = env["FUNCTIONS_CUSTOMHANDLER_PORT"].as_str().unwrap();
    assert_eq!(env["FUNCTIONS_HTTPWORKER_PORT"], port);
    let id = env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"].as_str().unwrap();
    assert!(devstack::world_guid(id));
    assert_eq!(env["FUNCTIONS_HTTPWORKER_ID"], id);
    let root = f.root.canonicalize().unwrap().display().to_string();
    assert_eq!(env["FUNCTIONS_APP_ROOT_PATH"], root.as_str());
    assert_eq!(env["AzureWebJobsScriptRoot"], root.as_str());
    assert_eq!(env["AZURE_FUNCTIONS_ENVIRONMENT"], "Development");
    assert_eq!(e["cwd"], root.as_str());
    assert_eq!(
        env["FROM_VALUES"], "v",
        "local.settings.json Values reach the handler"
    );
    assert_eq!(
        env["FROM_PLATFORM"], "platform",
        "an existing variable wins over Values"
    );
    assert_eq!(e["argv"], json!(["--conn", "abc", "--x"]), "case 3");
    // The function with an invalid folder name was skipped, the rest loaded.
    assert_eq!(host.shared.app.errors.len(), 1);
    host.stop().await;
}

#[tokio::test]
async fn case_2_worker_and_working_directories() {
    let f = fixture(&AppSpec::default());
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("host.json")).unwrap()).unwrap();
    doc["customHandler"]["description"] = json!({"defaultExecutablePath": "handler", "workingDirectory": "app", "workerDirectory": "bin"});
    write(&f.root.join("host.json"), &doc);
    let load = || devstack::host::app::FunctionApp::load(&f.root).unwrap();
    let spec = devstack::host::worker::LaunchSpec::new(&load(), None, Default::default(), 1);
    assert_eq!(
        spec.program, "handler",
        "left for PATH lookup when bin/handler is missing"
    );
    std::fs::create_dir_all(f.root.join("bin")).unwrap();
    std::fs::write(f.root.join("bin/handler"), "").unwrap();
    let spec = devstack::host::worker::LaunchSpec::new(&load(), None, Default::default(), 1);
    let root = f.root.canonicalize().unwrap();
    assert_eq!(PathBuf::from(&spec.program), root.join("bin/handler"));
    assert_eq!(spec.cwd, root.join("app"));
}

#[tokio::test]
async fn case_4_late_bind_with_404_on_root_counts_as_ready() {
    let started = Instant::now();
    let (host, _f) = start(
        &AppSpec::default(),
        HostMode::FromHostJson,
        false,
        "bind-late",
    )
    .await;
    assert!(host.ready(Duration::from_secs(20)).await);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(get(&host, "/api/echo/x").await.status(), 200);
    host.stop().await;
}

#[tokio::test]
async fn case_5_never_ready_restarts_then_stops_the_host() {
    let spec = AppSpec {
        init_timeout: "00:00:01",
        ..Default::default()
    };
    let (host, f) = start(&spec, HostMode::FromHostJson, false, "never-bind").await;
    eventually("the host to give up", || {
        matches!(host.shared.worker.status(), Status::Stopped(_))
    })
    .await;
    assert_eq!(starts(&f), 3, "three attempts");
    let Status::Stopped(reason) = host.shared.worker.status() else {
        unreachable!()
    };
    assert!(
        reason.contains("Exceeded http worker restart retry count"),
        "{reason}"
    );
    assert_eq!(get(&host, "/api/echo/x").await.status(), 500);
    host.stop().await;
}

#[tokio::test]
async fn case_6_exit_codes() {
    let (host, f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    get(&host, "/api/echo/exit/200").await;
    eventually("a restart after exit 200", || starts(&f) == 2).await;
    assert!(host.ready(Duration::from_secs(20)).await);
    get(&host, "/api/echo/exit/0").await;
    eventually("exit 0 to stop the handler", || {
        matches!(host.shared.worker.status(), Status::Stopped(_))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(starts(&f), 2, "exit 0 is not restarted");
    host.stop().await;

    let (host, f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    for attempt in 1..=3 {
        assert!(
            host.ready(Duration::from_secs(20)).await,
            "attempt {attempt}"
        );
        get(&host, "/api/echo/exit/1").await;
        eventually("the crash to be noticed", || {
            starts(&f) > attempt || matches!(host.shared.worker.status(), Status::Stopped(_))
        })
        .await;
    }
    eventually("the third counted crash to stop the host", || {
        matches!(host.shared.worker.status(), Status::Stopped(_))
    })
    .await;
    host.stop().await;
}

#[tokio::test]
async fn case_7_console_lines_are_classified() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    eventually("console output", || host.shared.worker.console().len() >= 3).await;
    let lines: Vec<(String, String)> = host
        .shared
        .worker
        .console()
        .into_iter()
        .map(|l| (l.level.to_owned(), l.text))
        .collect();
    for expected in [
        ("Information", "hello"),
        ("Warning", "warning x"),
        ("Error", "boom"),
    ] {
        assert!(
            lines.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {lines:?}"
        );
    }
    host.stop().await;
}

#[tokio::test]
async fn case_8_9_11_routes_prefix_methods_and_no_keys_locally() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    assert_eq!(
        get(&host, "/api/getonly").await.status(),
        200,
        "default route is the function name; case 11: no key needed"
    );
    assert_eq!(
        get(&host, "/API/GETONLY").await.status(),
        200,
        "case-insensitive"
    );
    assert_eq!(get(&host, "/getonly").await.status(), 404);
    let post = client()
        .post(format!("{}/api/getonly", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404, "case 9: a method mismatch is a 404");
    host.stop().await;

    let (host, _f) = ready(
        &AppSpec {
            route_prefix: "",
            ..Default::default()
        },
        HostMode::FromHostJson,
    )
    .await;
    assert_eq!(get(&host, "/getonly").await.status(), 200);
    assert_eq!(get(&host, "/api/getonly").await.status(), 404);
    host.stop().await;
}

#[tokio::test]
async fn case_10_14_21_payload_envelope() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    // Case 14: an extra output binding switches the function to payload mode.
    let queued = echo(&host, "/api/queued").await;
    assert_eq!(queued["function"], "queued");
    host.stop().await;

    let (host, _f) = ready(
        &AppSpec {
            forwarding: false,
            ..Default::default()
        },
        HostMode::FromHostJson,
    )
    .await;
    // Case 10 (payload mode): route values, null for an absent optional one.
    let items = echo(&host, "/api/items/42").await;
    assert_eq!(
        items["envelope"]["Data"]["req"]["Params"],
        json!({"id": "42", "name": null})
    );
    assert_eq!(get(&host, "/api/items/abc").await.status(), 404);
    let res = client()
        .post(format!("{}/api/echo/order?x=1", host.url))
        .header("content-type", "application/json")
        .body(r#"{"id":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8",
        "case 23"
    );
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["function"], "echo", "POST /<FunctionName>, no prefix");
    let req = &e["envelope"]["Data"]["req"];
    assert_eq!(req["Method"], "POST");
    assert!(
        req["Url"]
            .as_str()
            .unwrap()
            .ends_with("/api/echo/order?x=1"),
        "{}",
        req["Url"]
    );
    assert_eq!(req["Query"], json!({"x": "1"}));
    assert_eq!(req["Headers"]["Content-Type"], json!(["application/json"]));
    assert_eq!(req["Body"], r#"{"id":5}"#);
    assert!(req["Identities"].is_array());
    assert_eq!(e["envelope"]["Metadata"]["sys"]["MethodName"], "echo");
    assert_eq!(e["envelope"]["Metadata"]["x"], "1");
    let ct = header(&e, "content-type");
    assert_eq!(ct, ["application/json; charset=utf-8"]);
    assert!(devstack::world_guid(
        header(&e, "x-azure-functions-invocationid")[0]
    ));
    // Case 23: Logs become host log lines.
    assert!(
        host.shared
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l == "payload echo")
    );

    // Case 22: octet-stream bodies arrive base64-encoded.
    let res = client()
        .post(format!("{}/api/echo/bin", host.url))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 0xFF])
        .send()
        .await
        .unwrap();
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["envelope"]["Data"]["req"]["Body"], "AP8=");
    host.stop().await;
}

#[tokio::test]
async fn case_12_keys_are_enforced_when_asked() {
    let (host, _f) = start(&AppSpec::default(), HostMode::FromHostJson, true, "").await;
    assert!(host.ready(Duration::from_secs(20)).await);
    let keys = host.keys().clone();
    let status = |path: String, header: Option<String>| {
        let url = format!("{}{path}", host.url);
        async move {
            let mut req = client().get(url);
            if let Some(h) = header {
                req = req.header("x-functions-key", h);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("/api/getonly".into(), None).await, 401, "(a)");
    assert_eq!(
        status(format!("/api/getonly?code={}", keys.function), None).await,
        200,
        "(b)"
    );
    assert_eq!(
        status("/api/getonly?code=bad".into(), Some(keys.function.clone())).await,
        200,
        "(c) header wins"
    );
    assert_eq!(
        status("/api/adminfn".into(), Some(keys.function.clone())).await,
        401,
        "(d)"
    );
    assert_eq!(
        status("/api/adminfn".into(), Some(keys.master.clone())).await,
        200,
        "master key"
    );
    assert_eq!(status("/api/anon".into(), None).await, 200, "anonymous");
    host.stop().await;
}

#[tokio::test]
async fn case_13_15_16_forwarded_request_shape() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    let e: Value = client()
        .get(format!("{}/api/echo/items/42?b=x%20y&a=1&a=2", host.url))
        .header("Accept", "text/plain")
        .header("x-functions-key", "k")
        .header("User-Agent", "client/1.0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["path"], "/api/echo/items/42?b=x%20y&a=1%2C2", "case 13");
    assert_eq!(header(&e, "accept"), ["text/plain"]);
    assert_eq!(
        header(&e, "x-functions-key"),
        ["k"],
        "keys are not stripped"
    );
    assert!(
        header(&e, "host")[0].starts_with("127.0.0.1:"),
        "the client's Host header is kept"
    );
    assert!(devstack::world_guid(
        header(&e, "x-azure-functions-invocationid")[0]
    ));
    assert!(!header(&e, "x-azure-functions-hostversion").is_empty());
    let ua = header(&e, "user-agent")[0];
    assert!(
        ua.starts_with("client/1.0") && ua.contains("Azure-Functions-Host/"),
        "{ua}"
    );
    assert!(
        header(&e, "content-type").is_empty() && header(&e, "content-length").is_empty(),
        "case 16: GET has no body headers"
    );

    let body = br#"{"hello":"world"}"#.to_vec();
    let e: Value = client()
        .post(format!("{}/api/echo/post", host.url))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(e["body_b64"].as_str().unwrap())
            .unwrap(),
        body
    );
    assert_eq!(header(&e, "content-type"), ["application/json"]);
    assert_eq!(
        header(&e, "content-length"),
        [body.len().to_string().as_str()]
    );
    host.stop().await;
}

#[tokio::test]
async fn case_17_chunked_bodies_fail_in_forward_mode() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        bytes::Bytes::from_static(b"chunk"),
    )]);
    let res = client()
        .post(format!("{}/api/echo/chunked", host.url))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    host.stop().await;
}

#[tokio::test]
async fn case_18_19_20_responses_pass_through_and_crashes_restart() {
    let (host, f) = ready(&AppSpec::default(), HostMode::FromHostJson).await;
    let res = get(&host, "/api/echo/status201").await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-foo"], "bar");
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len(), 1024);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));

    let res = get(&host, "/api/echo/redirect").await;
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["location"].to_str().unwrap()
        ),
        (302, "/x"),
        "not followed"
    );
    let res = get(&host, "/api/echo/fail").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text().await.unwrap(), "handler failed");

    let res = get(&host, "/api/echo/crash").await;
    assert_eq!(res.status(), 500);
    assert!(res.bytes().await.unwrap().is_empty());
    eventually("the restart after the crash", || starts(&f) == 2).await;
    assert!(host.ready(Duration::from_secs(20)).await);
    assert_eq!(get(&host, "/api/echo/x").await.status(), 200);
    host.stop().await;
}

#[tokio::test]
async fn case_29_function_timeout_fails_and_restarts_the_handler() {
    let spec = AppSpec {
        function_timeout: "00:00:02",
        ..Default::default()
    };
    let (host, f) = ready(&spec, HostMode::FromHostJson).await;
    let started = Instant::now();
    let res = get(&host, "/api/echo/sleep").await;
    assert_eq!(res.status(), 500);
    assert!(started.elapsed() < Duration::from_secs(8));
    eventually("the handler restart", || starts(&f) == 2).await;
    host.stop().await;
}

#[tokio::test]
async fn host_mode_override_sends_payloads_for_http_functions() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::Payload).await;
    let e = echo(&host, "/api/getonly").await;
    assert_eq!(e["function"], "getonly");
    host.stop().await;
}

/// Sends `GET {path}` exactly as written (reqwest would resolve dot segments
/// before sending) and returns the status and the raw response.
async fn raw_get(host: &FunctionsHost, path: &str) -> (u16, String) {
    let addr = host.url.trim_start_matches("http://").to_owned();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, text)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn route_and_key_checks_use_the_path_that_is_dispatched() {
    let (host, _f) = start(&AppSpec::default(), HostMode::FromHostJson, true, "").await;
    assert!(host.ready(Duration::from_secs(20)).await);
    // Each resolves to a function that needs a key: without one, 401.
    for path in [
        "/api/anon/../getonly",
        "/api/anon/%2e%2e/getonly",
        "/api/anon/%2E%2E/adminfn",
        "/api/anon/.%2e/getonly",
        "/api/echo/x/../../getonly",
    ] {
        let (status, text) = raw_get(&host, path).await;
        assert_eq!(status, 401, "{path}: {text}");
    }
    // And the key check is the dispatched function's: anon stays anonymous.
    let (status, text) = raw_get(&host, "/api/getonly/../anon").await;
    assert_eq!(status, 200, "{text}");
    let keys = host.keys().clone();
    let (status, text) = raw_get(
        &host,
        &format!("/api/anon/%2e%2e/echo/seen?code={}", keys.function),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("/api/echo/seen"),
        "dispatched as routed: {text}"
    );
    host.stop().await;
}
