//! Blob transfers that stream (proxy mode): a 256 MiB round trip through the
//! host, ranges and validators, and cut-off uploads and downloads.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::Method;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// Byte `i` of a test blob.
fn byte_at(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / MIB) as u8
}

/// `mib` MiB of the test pattern, in 1 MiB chunks, made as they are sent.
fn pattern(mib: usize) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter(0..mib).map(|m| Ok((m * MIB..(m + 1) * MIB).map(byte_at).collect()))
}

fn pattern_sha256(mib: usize) -> Vec<u8> {
    let mut hash = Sha256::new();
    for m in 0..mib {
        let chunk: Vec<u8> = (m * MIB..(m + 1) * MIB).map(byte_at).collect();
        hash.update(&chunk);
    }
    hash.finalize().to_vec()
}

/// Bytes the process has read through syscalls (`/proc/<pid>/io`, `rchar`):
/// sockets included, so it counts what the handler took from Storage.
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_256_mib_blob_streams_up_and_down_through_the_host_unchanged() {
    const SIZE_MIB: usize = 256;
    let (_stack, host) = scenario_world_with(
        None,
        &[
            ("MAX_UPLOAD_BYTES", &(512 * MIB).to_string()),
            (
                "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
                &(512 * MIB).to_string(),
            ),
            ("BLOB_CONTAINERS", "big"),
        ],
        true,
    )
    .await;
    let url = format!("{}/api/blobs/big/256.bin", host.url);
    // Chunked: no Content-Length, which forward mode could not carry (case 17).
    let put = client()
        .put(&url)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(pattern(SIZE_MIB)))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());

    let pid = host.shared.worker.pid().expect("handler pid");
    let before = bytes_read(pid);
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some((SIZE_MIB * MIB) as u64));
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert!(res.headers().contains_key("etag"));
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    // Hold the download: the handler reads from Storage only as we take.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let read_so_far = bytes_read(pid) - before;
    assert!(
        read_so_far < (SIZE_MIB * MIB / 2) as u64,
        "the first bytes arrived before the last left Storage (the handler had read {read_so_far} bytes)"
    );
    let mut hash = Sha256::new();
    hash.update(&first);
    let mut received = first.len();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len();
        hash.update(&chunk);
    }
    assert_eq!(received, SIZE_MIB * MIB);
    assert!(
        hash.finalize().to_vec() == pattern_sha256(SIZE_MIB),
        "SHA-256 matches"
    );

    // A download cut off after its first bytes leaves the handler serving.
    let res = client().get(&url).send().await.unwrap();
    let mut body = res.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    for _ in 0..3 {
        let health = get(format!("{}/api/health", host.url)).await;
        assert_eq!(health.status, 200);
    }
    let part = client()
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    let tail: Vec<u8> = (SIZE_MIB * MIB - 10..SIZE_MIB * MIB).map(byte_at).collect();
    assert_eq!(part.bytes().await.unwrap().as_ref(), tail.as_slice());
}

#[tokio::test]
async fn ranges_validators_and_the_forward_cap() {
    let w = world();
    // 1.5 MiB: over MAX_BODY_BYTES (1 MiB), under MAX_UPLOAD_BYTES (2 MiB).
    let size = MIB + MIB / 2;
    let data: Vec<u8> = (0..size).map(byte_at).collect();
    let url = |base: &str| format!("{base}/api/blobs/e2e-proxy/ranges.bin");
    let put = send(
        Method::PUT,
        url(&w.proxy),
        Some(("application/octet-stream", data.clone())),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());

    let whole = get(url(&w.proxy)).await;
    assert_eq!(whole.status, 200, "proxy mode streams past MAX_BODY_BYTES");
    assert!(whole.body.as_ref() == data.as_slice());
    let etag = whole.header("etag").expect("ETag passed through");
    assert!(whole.header("last-modified").is_some());
    assert_eq!(whole.header("content-length"), Some(size.to_string()));

    let forward = get(url(&w.forward)).await;
    assert_eq!(forward.status, 422, "forward mode keeps the cap");
    assert!(
        forward.text().contains("enableProxyingHttpRequest"),
        "{}",
        forward.text()
    );

    let ranged = |range: &'static str| {
        let u = url(&w.proxy);
        async move {
            let res = client().get(u).header("range", range).send().await.unwrap();
            let status = res.status().as_u16();
            let content_range = res
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_range, res.bytes().await.unwrap())
        }
    };
    for (range, start, end) in [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=1500000-", 1_500_000, size - 1),
        ("bytes=-300", size - 300, size - 1),
        ("bytes=10-99999999", 10, size - 1),
    ] {
        let (status, content_range, body) = ranged(range).await;
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            content_range.as_deref(),
            Some(format!("bytes {start}-{end}/{size}").as_str()),
            "{range}"
        );
        assert!(
            body.as_ref() == &data[start..=end],
            "{range}: exactly its bytes"
        );
    }
    let (status, content_range, _) = ranged("bytes=2000000-").await;
    assert_eq!(status, 416);
    assert_eq!(content_range, Some(format!("bytes */{size}")));
    let (status, _, body) = ranged("bytes=5-1").await;
    assert_eq!(
        (status, body.len()),
        (200, size),
        "an invalid range is ignored"
    );

    let not_modified = client()
        .get(url(&w.proxy))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let changed = client()
        .get(url(&w.proxy))
        .header("if-none-match", "\"0x0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
}

#[tokio::test]
async fn a_cut_off_upload_commits_nothing() {
    let w = world();
    for (mode, base) in [("proxy", &w.proxy), ("forward", &w.forward)] {
        let url = format!("{base}/api/blobs/e2e-{mode}/cut-off.bin");
        let before = send(
            Method::PUT,
            url.clone(),
            Some(("text/plain", b"the earlier blob".to_vec())),
        )
        .await;
        assert_eq!(before.status, 201);
        // A body that breaks after 1 MiB, as a client that goes away would.
        let chunks = futures::stream::iter(0..3).map(|i| {
            if i < 2 {
                Ok(vec![b'x'; MIB / 2])
            } else {
                Err(std::io::Error::other("client went away"))
            }
        });
        let cut = client()
            .put(&url)
            .header("content-length", (2 * MIB).to_string())
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await;
        assert!(
            cut.is_err() || !cut.as_ref().unwrap().status().is_success(),
            "{mode}: {cut:?}"
        );
        let after = get(url.clone()).await;
        assert_eq!(after.status, 200, "{mode}");
        assert_eq!(after.text(), "the earlier blob", "{mode}: untouched");
    }
    // The create-only write still refuses to replace.
    let create_only = client()
        .put(format!("{}/api/blobs/e2e-proxy/cut-off.bin", w.proxy))
        .header("if-none-match", "*")
        .body("again")
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), 409);
}
