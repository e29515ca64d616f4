//! Blob transfer figures (`cargo bench --bench transfer`): 256 MiB up and
//! down through devstack's host stand-in (proxy mode) → the release handler →
//! Azurite, beside the same transfer made straight from this process with
//! the same SDK client, in the same run. Prints MB/s, the ratio and the
//! handler's peak RSS growth; asserts nothing about timings.

mod common;
use common::rss_kib;
use devstack::host::{FunctionsHost, HostMode, HostOptions};
use devstack::stack::{Stack, StackOptions};
use futures::StreamExt;
use handler::azure::blobs::{Opened, ReadOptions, Write};
use handler::body_stream::BodyStream;
use handler::configuration::Settings;
use handler::names::{BlobName, ContainerName};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const SIZE_MIB: usize = 256;
const ROUNDS: usize = 3;

/// The blob's bytes, made as they are sent, in 1 MiB chunks.
fn chunks() -> impl futures::Stream<Item = Vec<u8>> {
    futures::stream::iter(0..SIZE_MIB).map(|m| vec![(m % 251) as u8; MIB])
}

fn mb_per_s(elapsed: Duration) -> f64 {
    (SIZE_MIB * MIB) as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux, as root
/// or as its owner), so each transfer's peak is its own.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    handler::http_client::install_crypto_provider();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut options = StackOptions::new(
        std::env::temp_dir().join(format!("bench-transfer-{}", std::process::id())),
    );
    options.cache_dir = Some(root.join(".devstack/cache"));
    let stack = Stack::start(options).await.expect("devstack starts");
    let limit = (2 * SIZE_MIB * MIB).to_string();
    let mut env = stack.handler_env();
    env.retain(|(k, _)| k != "BLOB_CONTAINERS");
    for (k, v) in [
        ("BLOB_CONTAINERS", "bench"),
        ("MAX_UPLOAD_BYTES", limit.as_str()),
        ("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", limit.as_str()),
        ("RUST_LOG", "warn"),
    ] {
        env.push((k.into(), v.into()));
    }
    let host = FunctionsHost::start(HostOptions {
        app_root: root.clone(),
        port: 0,
        mode: HostMode::FromHostJson,
        enforce_keys: false,
        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_handler"))),
        platform_env: env.clone(),
    })
    .await
    .expect("host starts");
    assert!(host.ready(Duration::from_secs(30)).await);
    let pid = host.shared.worker.pid().expect("handler pid");

    // The direct baseline: the handler's own Blob client, in this process.
    let settings = Settings::from_sources(None, env.into_iter().collect()).unwrap();
    let state = handler::AppState::new(&settings).unwrap();
    let store = state.azure.blobs.as_ref().expect("a blob client");
    let container = ContainerName::parse("bench").unwrap();
    let direct_name = BlobName::parse("direct.bin").unwrap();

    let client = reqwest::Client::new();
    let url = format!("{}/api/blobs/bench/through-host.bin", host.url);
    let (idle, _) = rss_kib(pid);
    println!(
        "{SIZE_MIB} MiB blob, {ROUNDS} rounds, best of each (MB/s; handler RSS {:.1} MiB idle)",
        idle as f64 / 1024.0
    );
    let (mut direct_up, mut direct_down, mut host_up, mut host_down) = (0f64, 0f64, 0f64, 0f64);
    let (mut peak_up, mut peak_down) = (0u64, 0u64);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let body = BodyStream::new(chunks().map(|c| Ok(bytes::Bytes::from(c))));
        let stored = store
            .put_stream(
                &container,
                &direct_name,
                "application/octet-stream",
                body,
                u64::MAX,
                Write::Overwrite,
            )
            .await
            .expect("direct upload");
        assert_eq!(stored as usize, SIZE_MIB * MIB);
        direct_up = direct_up.max(mb_per_s(started.elapsed()));

        let started = Instant::now();
        let Ok(Opened::Body(body)) = store
            .open(&container, &direct_name, &ReadOptions::default())
            .await
        else {
            panic!("direct download");
        };
        let mut stream = body.stream;
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().len();
        }
        assert_eq!(n, SIZE_MIB * MIB);
        direct_down = direct_down.max(mb_per_s(started.elapsed()));

        reset_peak(pid);
        let started = Instant::now();
        let put = client
            .put(&url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(
                chunks().map(Ok::<_, std::io::Error>),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        host_up = host_up.max(mb_per_s(started.elapsed()));
        peak_up = peak_up.max(rss_kib(pid).1);

        reset_peak(pid);
        let started = Instant::now();
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let mut stream = res.bytes_stream();
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().len();
        }
        assert_eq!(n, SIZE_MIB * MIB);
        host_down = host_down.max(mb_per_s(started.elapsed()));
        peak_down = peak_down.max(rss_kib(pid).1);
    }
    println!(
        "{:<44} {:>9} {:>9} {:>7}",
        "transfer", "direct", "via host", "ratio"
    );
    for (name, direct, via) in [
        ("upload (chunked PUT → staged blocks)", direct_up, host_up),
        ("download (GET, streamed)", direct_down, host_down),
    ] {
        println!(
            "{name:<44} {direct:>9.0} {via:>9.0} {:>6.0}%",
            via / direct * 100.0
        );
    }
    for (direction, peak) in [("upload", peak_up), ("download", peak_down)] {
        println!(
            "handler peak RSS during the {direction}: {:.1} MiB, {:.1} MiB over idle",
            peak as f64 / 1024.0,
            peak.saturating_sub(idle) as f64 / 1024.0,
        );
    }
    host.stop().await;
    stack.stop().await;
}
