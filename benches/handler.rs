//! Speed and memory figures for the handler (`cargo bench --bench handler`).
//! Prints a table; asserts nothing about timings.

mod common;
use common::rss_kib;
use handler::Application;
use handler::configuration::Settings;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn token_body() -> serde_json::Value {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    json!({"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln", "expires_on": exp.to_string(),
           "resource": "r", "token_type": "Bearer"})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6
}

type Make = Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>;

/// `total` requests from `concurrency` tasks: (requests/s, p50 µs, p99 µs).
async fn load(make: Make, total: usize, concurrency: usize) -> (f64, f64, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let make = make.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(total / concurrency);
                for _ in 0..total / concurrency {
                    let t = Instant::now();
                    let res = make().send().await.expect("request");
                    assert!(res.status().is_success(), "{}", res.status());
                    res.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (
        all.len() as f64 / secs,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

/// Starts the release `handler` on `port` with `env`, and waits until it answers.
async fn spawn_handler(
    client: &reqwest::Client,
    port: u16,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    while client.get(format!("{url}/")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, url)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    handler::http_client::install_crypto_provider();
    let identity = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body()))
        .mount(&identity)
        .await;
    let endpoint = format!("{}/msi/token", identity.uri());
    println!(
        "{:<52} {:>14} {:>10} {:>10}",
        "benchmark", "throughput", "p50 µs", "p99 µs"
    );

    // The token provider's own figures (cache hits, single-flight, failures)
    // are printed by `cargo bench -p app-service-identity`.

    // 3. Through HTTP, in process (actix on loopback, 2 workers).
    let env: HashMap<String, String> = HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into()),
        ("IDENTITY_ENDPOINT".into(), endpoint.clone()),
        ("IDENTITY_HEADER".into(), "h".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    let app = Application::build(Settings::from_sources(None, env).unwrap()).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let envelope = json!({"Data": {"req": {"Method": "GET", "Query": {"resource": "https://vault.azure.net"}, "Headers": {}, "Params": {}}}, "Metadata": {}});
    let get = |path: &str| -> Make {
        let (c, url) = (client.clone(), format!("{base}{path}"));
        Arc::new(move || c.get(&url))
    };
    let payload: Make = {
        let (c, url, e) = (client.clone(), format!("{base}/token"), envelope.clone());
        Arc::new(move || c.post(&url).json(&e))
    };
    for (name, make) in [
        ("GET / (readiness probe)", get("/")),
        ("GET /api/health (forward mode)", get("/api/health")),
        (
            "GET /api/token?resource=… (cached token → claims)",
            get("/api/token?resource=https://vault.azure.net"),
        ),
        ("POST /token envelope (payload mode)", payload),
    ] {
        load(make.clone(), 2_000, 16).await; // warm-up
        let (rps, p50, p99) = load(make, 20_000, 16).await;
        println!("{name:<52} {:>10.0} r/s {p50:>10.0} {p99:>10.0}", rps);
    }

    // 4. Memory of the real binary (release build) under the same load.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut child, url) = spawn_handler(
        &client,
        port,
        &[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", "h")],
    )
    .await;
    let (idle, _) = rss_kib(child.id());
    let make: Make = {
        let (c, u) = (
            client.clone(),
            format!("{url}/api/token?resource=https://vault.azure.net"),
        );
        Arc::new(move || c.get(&u))
    };
    let (rps, p50, p99) = load(make, 20_000, 16).await;
    let (after, peak) = rss_kib(child.id());
    println!(
        "{:<52} {:>10.0} r/s {p50:>10.0} {p99:>10.0}",
        "handler binary: GET /api/token (separate process)", rps
    );
    println!(
        "handler binary memory: {:.1} MiB idle after start, {:.1} MiB after 20k requests, peak {:.1} MiB",
        idle as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();

    // 5. Payload mode: the largest envelope the handler accepts (a blob PUT
    // whose base64 body decodes to just under MAX_BODY_BYTES, 10 MiB), in a
    // fresh process so its peak RSS is this envelope's alone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut child, url) = spawn_handler(&client, port, &[]).await;
    let (idle, _) = rss_kib(child.id());
    let raw = vec![0xA5u8; 10 * 1024 * 1024 - 1024];
    let envelope = json!({"Data": {"req": {
        "Method": "PUT", "Params": {"container": "app1-data", "name": "big.bin"},
        "Headers": {"Content-Type": ["application/octet-stream"]},
        "Body": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw),
    }}, "Metadata": {}})
    .to_string();
    let size = envelope.len();
    let started = Instant::now();
    let res = client
        .post(format!("{url}/blobs"))
        .header("content-type", "application/json")
        .body(envelope)
        .send()
        .await
        .unwrap();
    let reply: serde_json::Value = res.json().await.unwrap();
    let elapsed = started.elapsed();
    let (_, peak) = rss_kib(child.id());
    // Storage is not configured here: the function parsed, decoded and checked
    // the whole envelope, then answered 503 not-configured.
    println!(
        "payload mode, largest accepted envelope ({:.1} MB): answered {} in {:.0} ms; RSS {:.1} MiB idle, peak {:.1} MiB",
        size as f64 / 1e6,
        reply["Outputs"]["res"]["statusCode"],
        elapsed.as_secs_f64() * 1000.0,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();

    // 6. Tracing: the same binary with the SDK disabled (no spans: the
    // baseline), with span export off (the default: spans get ids, for
    // traceparent and the log lines, and go nowhere) and on (OTLP/HTTP to a
    // local receiver), each request continuing a caller's traceparent.
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let token_path = "/api/token?resource=https://vault.azure.net";
    let configs = [
        (
            "disabled (OTEL_SDK_DISABLED)",
            Some(("OTEL_SDK_DISABLED", "true".to_owned())),
        ),
        ("export off", None),
        (
            "export on (OTLP/HTTP)",
            Some(("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.uri())),
        ),
    ];
    for (label, setting) in &configs {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = vec![
            ("IDENTITY_ENDPOINT", endpoint.as_str()),
            ("IDENTITY_HEADER", "h"),
        ];
        if let Some((name, value)) = setting {
            env.push((name, value.as_str()));
        }
        let (mut child, url) = spawn_handler(&client, port, &env).await;
        for (path, name) in [
            ("/api/health", "GET /api/health"),
            (token_path, "GET /api/token (cached)"),
        ] {
            let make: Make = {
                let (c, u) = (client.clone(), format!("{url}{path}"));
                Arc::new(move || {
                    c.get(&u).header(
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                })
            };
            load(make.clone(), 2_000, 16).await; // warm-up
            let (rps, p50, p99) = load(make, 20_000, 16).await;
            println!(
                "{:<52} {:>10.0} r/s {p50:>10.0} {p99:>10.0}",
                format!("tracing, {label}: {name}"),
                rps
            );
        }
        let (after, peak) = rss_kib(child.id());
        println!(
            "tracing, {label}: handler RSS {:.1} MiB after 44k requests, peak {:.1} MiB",
            after as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        // SIGTERM, as the host stops it: the handler flushes what is batched.
        let stopping = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        println!(
            "tracing, {label}: stopped (and flushed) in {:.0} ms",
            stopping.elapsed().as_secs_f64() * 1000.0
        );
    }
    let batches = receiver.received_requests().await.unwrap_or_default();
    println!(
        "tracing, export on: the receiver got {} OTLP batches ({:.1} MB)",
        batches.len(),
        batches.iter().map(|r| r.body.len()).sum::<usize>() as f64 / 1e6
    );
}
