//! Speed and memory figures for the handler (`cargo bench --bench handler`).
//!
//! Every figure is printed beside a bare actix-web server (the same actix-web,
//! `examples/bare_actix.rs`) measured the same way in the same run, and as a
//! ratio to it: on a shared machine only ratios hold. Asserts nothing about
//! timings.
//!
//! Both servers run as release binaries in processes of their own; the load
//! comes from `wrk` when it is on PATH (else from this process, see
//! `http_load`).

mod common;
mod http_load;

use common::rss_kib;
use http_load::{Loader, Request};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Rounds of (bare, handler) measurements per row; each row's ratio is the
/// median of the rounds' ratios, so a slow moment hits both servers.
const ROUNDS: usize = 7;
const MEASURE: Duration = Duration::from_secs(2);
const COLD_STARTS: usize = 21;
const TOKEN_PATH: &str = "/api/token?resource=https://vault.azure.net";

/// A server under test: a child process answering on a loopback port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mut command: Command, args: &[String]) -> Self {
        let port = free_port();
        let child = command
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("server starts");
        let mut server = Self { child, port };
        server.wait_ready();
        server
    }

    /// The baseline, answering each `(method, path, bytes)` with that many bytes.
    fn bare(bodies: &[(String, String, usize)]) -> Self {
        let args: Vec<String> = bodies
            .iter()
            .flat_map(|(m, p, n)| [m.clone(), p.clone(), n.to_string()])
            .collect();
        Self::start(Command::new(bare_actix()), &args)
    }

    fn handler(env: &[(&str, &str)]) -> Self {
        Self::start(handler_command(env), &[])
    }

    /// Blocks until `GET /` answers 200.
    fn wait_ready(&mut self) {
        loop {
            if answers_ready(self.port) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited before it answered: {status}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn rss(&self) -> (u64, u64) {
        rss_kib(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn handler_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
    command
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    command
}

/// The baseline binary, an example of this package in the same profile as
/// the handler binary. `cargo bench` builds no examples, so it is built (or
/// found up to date) here, once per run.
fn bare_actix() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let release = Path::new(env!("CARGO_BIN_EXE_handler"))
                .parent()
                .expect("target dir");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let built = Command::new(cargo)
                .args(["build", "--release", "--example", "bare_actix"])
                .env("CARGO_TARGET_DIR", release.parent().expect("target dir"))
                .status()
                .expect("cargo runs");
            let path = release.join("examples").join("bare_actix");
            assert!(
                built.success() && path.exists(),
                "could not build {}: run `cargo build --release --example bare_actix`",
                path.display()
            );
            path
        })
        .clone()
}

/// devstack's: a port no other server in this process can be handed first.
fn free_port() -> u16 {
    devstack::free_port().expect("a free loopback port")
}

/// One `GET /` on a fresh connection: whether it answered 200.
fn answers_ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints one row: the bare server's and the handler's rate, and their ratio.
async fn compare(loader: &Loader, label: &str, bare: &Server, handler: &Server, request: &Request) {
    // Warm both up: connections, the handler's token cache, the allocator.
    loader
        .requests_per_s(bare.port, request, Duration::from_secs(1))
        .await;
    loader
        .requests_per_s(handler.port, request, Duration::from_secs(1))
        .await;
    let (mut bare_rates, mut rates, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let measure = |port| loader.requests_per_s(port, request, MEASURE);
        // Each goes first in every other round, so neither gains by its place.
        let (b, h) = if round % 2 == 0 {
            let b = measure(bare.port).await;
            (b, measure(handler.port).await)
        } else {
            let h = measure(handler.port).await;
            (measure(bare.port).await, h)
        };
        bare_rates.push(b);
        rates.push(h);
        ratios.push(h / b);
    }
    let ratio = median(&mut ratios) * 100.0;
    // `median` sorted them: the spread is the ends.
    let (low, high) = (ratios[0] * 100.0, ratios[ROUNDS - 1] * 100.0);
    println!(
        "{label:<58} {:>9.0} {:>9.0} {ratio:>6.0} %  {low:>3.0}–{high:.0} %",
        median(&mut bare_rates),
        median(&mut rates),
    );
}

/// How long the handler's answer to each request is, as (method, path, bytes).
async fn answer_sizes<'a>(
    port: u16,
    requests: impl Iterator<Item = &'a Request>,
) -> Vec<(String, String, usize)> {
    let client = reqwest::Client::new();
    let mut sizes = vec![];
    for request in requests {
        let url = format!("http://127.0.0.1:{port}{}", request.path);
        let sent = match &request.json_body {
            Some(body) => client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone()),
            None => client.get(&url),
        };
        let body = sent.send().await.unwrap().bytes().await.unwrap();
        let method = if request.json_body.is_some() {
            "POST"
        } else {
            "GET"
        };
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        sizes.push((method.to_owned(), path, body.len()));
    }
    sizes
}

fn token_body() -> serde_json::Value {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    json!({"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCIsImlzcyI6Imh0dHBzOi8vc3RzLndpbmRvd3MubmV0L3QvIiwib2lkIjoiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAxIiwicm9sZXMiOlsiQSJdfQ.c2ln",
           "expires_on": exp.to_string(), "resource": "https://vault.azure.net", "token_type": "Bearer"})
}

/// What the host adds to a request it proxies (A10b): its invocation id twice
/// and the caller's trace context.
fn as_proxied(request: Request) -> Request {
    const ID: &str = "3f0d9e52-7a43-4c6e-9b1e-2a5d8c9e0f11";
    request
        .with_header("X-Azure-Functions-InvocationId", ID)
        .with_header("x-ms-invocation-id", ID)
        .with_header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let identity = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body()))
        .mount(&identity)
        .await;
    let endpoint = format!("{}/msi/token", identity.uri());
    let managed = [
        ("IDENTITY_ENDPOINT", endpoint.as_str()),
        ("IDENTITY_HEADER", "h"),
    ];
    let loader = Loader::detect();
    println!("load: {}", loader.describe());
    println!(
        "baseline: a bare actix-web server (examples/bare_actix.rs), same actix-web, same run"
    );
    println!(
        "each ratio: the median of {ROUNDS} interleaved rounds (rounds: the lowest and highest); GET / is\nthe same work on both servers, so its distance from 100 % is this run's noise\n"
    );

    // 1. The hot path, at the default telemetry settings (spans with ids, no
    // export) and RUST_LOG=warn.
    println!(
        "{:<58} {:>9} {:>9} {:>8}  rounds",
        "requests per second", "bare", "handler", "ratio"
    );
    let handler = Server::handler(&managed);
    let (idle, _) = handler.rss();
    let envelope = json!({"Data": {"req": {"Method": "GET", "Query": {"resource": "https://vault.azure.net"}, "Headers": {}, "Params": {}}}, "Metadata": {}}).to_string();
    let rows = [
        ("GET / (readiness probe)", Request::get("/")),
        ("GET /api/health", Request::get("/api/health")),
        (
            "GET /api/token?resource=… (cached token)",
            Request::get(TOKEN_PATH),
        ),
        (
            "  the same, as the host proxies it (ids, traceparent)",
            as_proxied(Request::get(TOKEN_PATH)),
        ),
        (
            "POST /token (payload-mode envelope, cached token)",
            Request::post_json("/token", envelope),
        ),
    ];
    // The baseline answers each path with as many bytes as the handler does.
    let bodies = answer_sizes(handler.port, rows.iter().map(|(_, r)| r)).await;
    let bare = Server::bare(&bodies);
    for (label, request) in &rows {
        compare(&loader, label, &bare, &handler, request).await;
    }
    let (after, peak) = handler.rss();
    drop(handler);

    // 2. Tracing: spans off entirely, and exported (OTLP/HTTP to a local
    // receiver), beside the same bare server.
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let receiver_uri = receiver.uri();
    for (label, setting) in [
        ("OTEL_SDK_DISABLED=true", ("OTEL_SDK_DISABLED", "true")),
        (
            "export on (OTLP/HTTP)",
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_uri.as_str()),
        ),
    ] {
        let mut env = managed.to_vec();
        env.push(setting);
        let handler = Server::handler(&env);
        for (path, name) in [
            ("/api/health", "GET /api/health"),
            (TOKEN_PATH, "cached token"),
        ] {
            let request = as_proxied(Request::get(path));
            compare(
                &loader,
                &format!("{label}: {name}"),
                &bare,
                &handler,
                &request,
            )
            .await;
        }
    }
    let batches = receiver.received_requests().await.unwrap_or_default();
    println!(
        "  (the receiver got {} OTLP batches, {:.1} MB)",
        batches.len(),
        batches.iter().map(|r| r.body.len()).sum::<usize>() as f64 / 1e6
    );
    drop(bare);

    // 3. Cold start: spawn → the first 200 on `GET /`, interleaved.
    let (mut bare_ms, mut handler_ms) = (vec![], vec![]);
    for _ in 0..COLD_STARTS {
        for (times, command) in [
            (&mut bare_ms, Command::new(bare_actix())),
            (&mut handler_ms, handler_command(&managed)),
        ] {
            let started = Instant::now();
            let server = Server::start(command, &[]);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            drop(server);
        }
    }
    let (b, h) = (median(&mut bare_ms), median(&mut handler_ms));
    println!(
        "\ncold start, spawn → first answer on GET / (median of {COLD_STARTS}): bare {b:.1} ms, handler {h:.1} ms: {:.2}×",
        h / b
    );

    println!(
        "handler memory: {:.1} MiB idle after start, {:.1} MiB after the hot-path load (peak {:.1} MiB)",
        idle as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    // 4. Payload mode: what an envelope costs, by shape.
    envelopes().await;
}

/// An envelope for `function` whose `Data.req` has `members` beside its method.
fn envelope(method: &str, members: &str) -> String {
    format!(r#"{{"Data":{{"req":{{"Method":"{method}",{members}}}}},"Metadata":{{}}}}"#)
}

/// About `size` bytes of `item` repeated, comma-separated.
fn repeated(item: &str, size: usize) -> String {
    let count = size / (item.len() + 1);
    let mut out = String::with_capacity(count * (item.len() + 1));
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

/// Each shape in a fresh handler, so its peak RSS is that envelope's alone.
/// The growth (peak − idle) is the envelope's cost; the goal is at most 4×
/// its size, whatever its shape.
async fn envelopes() {
    const SIZE: usize = 12 * 1024 * 1024;
    let ordinary = {
        let raw = vec![0xA5u8; 10 * 1024 * 1024 - 1024];
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
        (
            "ordinary: blob PUT, 10 MiB body (the largest accepted)".to_owned(),
            "blobs",
            envelope(
                "PUT",
                &format!(
                    r#""Params":{{"container":"app1-data","name":"big.bin"}},"Headers":{{"Content-Type":["application/octet-stream"]}},"Body":"{body}""#
                ),
            ),
        )
    };
    let mut shapes = vec![ordinary];
    let long = "x".repeat(SIZE);
    let deep = format!("{}{}", "[".repeat(SIZE / 2), "]".repeat(SIZE / 2));
    for member in ["Query", "Params", "Headers", "Identities", "Body"] {
        let wide = format!("[{}]", repeated("0", SIZE));
        let keys = format!(
            "{{{}}}",
            (0..SIZE / 16)
                .map(|i| format!(r#""k{i:07}":"v""#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let header_values = format!(r#"{{"x-many":[{}]}}"#, repeated(r#""v""#, SIZE));
        let long_value = match member {
            "Body" | "Identities" => format!(r#""{long}""#),
            _ => format!(r#"{{"x-long":"{long}"}}"#),
        };
        let nested = format!(r#"{{"a":{deep}}}"#);
        let values = if member == "Headers" {
            header_values
        } else {
            wide
        };
        for (shape, value) in [
            ("wide array", values),
            ("deep nesting", nested),
            ("many keys", keys),
            ("long string", long_value),
        ] {
            shapes.push((
                format!("{member}: {shape}"),
                "token",
                envelope("GET", &format!(r#""{member}":{value}"#)),
            ));
        }
    }

    println!(
        "\n{:<58} {:>8} {:>9} {:>10} {:>8}",
        "payload-mode envelope", "MiB", "answer", "peak MiB", "growth"
    );
    let client = reqwest::Client::new();
    for (label, function, body) in shapes {
        let server = Server::handler(&[]);
        let (idle, _) = server.rss();
        let size = body.len();
        let res = client
            .post(format!("http://127.0.0.1:{}/{function}", server.port))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the handler answers");
        let status = res.status().as_u16();
        let inner = res
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["Outputs"]["res"]["statusCode"].as_u64());
        let answer = match inner {
            Some(inner) => format!("{status}/{inner}"),
            None => status.to_string(),
        };
        let (_, peak) = server.rss();
        let growth = peak.saturating_sub(idle) as f64 * 1024.0 / size as f64;
        println!(
            "{label:<58} {:>8.1} {answer:>9} {:>10.1} {:>7.1}×",
            size as f64 / 1024.0 / 1024.0,
            peak as f64 / 1024.0,
            growth
        );
    }
    println!(
        "(answer: HTTP status / Outputs.res.statusCode; growth: (peak − idle RSS) ÷ envelope size)"
    );
}
