//! Proxy mode (`enableProxyingHttpRequest`): acceptance cases 31–40 of
//! functions-host.md (A10, A10b).

use super::*;
use futures_util::StreamExt;

fn proxying() -> AppSpec {
    AppSpec {
        custom_handler: json!({"enableProxyingHttpRequest": true}),
        ..AppSpec::default()
    }
}

/// A proxying host whose environment also holds `env`.
async fn proxy_host(env: &[(&str, &str)]) -> (FunctionsHost, Fixture) {
    let f = fixture(&proxying());
    let mut platform_env = vec![("FAKE_STARTS".to_owned(), f.starts.display().to_string())];
    platform_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let host = FunctionsHost::start(HostOptions {
        app_root: f.root.clone(),
        port: 0,
        mode: HostMode::FromHostJson,
        enforce_keys: false,
        executable: None,
        platform_env,
    })
    .await
    .expect("host starts");
    assert!(host.ready(Duration::from_secs(20)).await);
    (host, f)
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

#[tokio::test]
async fn case_31_path_and_query_verbatim_host_replaced_forwarded_headers_set() {
    let (host, _f) = ready(&proxying(), HostMode::FromHostJson).await;
    let public = host.url.trim_start_matches("http://").to_owned();
    let res = client()
        .get(format!("{}/api/echo/items/42?b=x%20y&a=1&a=2", host.url))
        .header("User-Agent", "case31-agent/1.0")
        .header("X-Azure-Functions-InvocationId", "forged-by-caller")
        .header("x-ms-invocation-id", "forged-too")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(
        echo["path"], "/api/echo/items/42?b=x%20y&a=1&a=2",
        "verbatim: no re-encoding, no comma-joining"
    );
    let hosts = header(&echo, "host");
    assert_eq!(hosts.len(), 1);
    assert!(
        hosts[0].starts_with("127.0.0.1:") && hosts[0] != public,
        "Host is the handler's own: {hosts:?}"
    );
    assert_eq!(header(&echo, "x-forwarded-host"), [public.as_str()]);
    assert_eq!(header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    let id = header(&echo, "x-azure-functions-invocationid");
    assert_eq!(id.len(), 1, "overwritten, not appended: {id:?}");
    assert!(is_guid(id[0]));
    assert_eq!(header(&echo, "x-ms-invocation-id"), id);
    assert_eq!(
        header(&echo, "user-agent"),
        ["case31-agent/1.0"],
        "left alone"
    );
    assert_eq!(
        header(&echo, "x-azure-functions-hostversion"),
        [devstack::host::dispatch::HOST_VERSION]
    );
}

#[tokio::test]
async fn case_32_a_function_with_another_output_still_gets_payloads() {
    let (host, _f) = ready(&proxying(), HostMode::FromHostJson).await;
    let echo = echo(&host, "/api/queued").await;
    assert_eq!(echo["function"], "queued", "payload mode: {echo}");
}

#[tokio::test]
async fn case_33_a_chunked_body_reaches_the_handler_whole() {
    let (host, _f) = ready(&proxying(), HostMode::FromHostJson).await;
    let body: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 253) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let res = client()
        .put(format!("{}/api/echo/upload", host.url))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    let got = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        echo["body_b64"].as_str().unwrap(),
    )
    .unwrap();
    assert!(got == body, "{} bytes arrived of {}", got.len(), body.len());
}

#[tokio::test]
async fn case_34_39_the_response_streams_and_a_client_may_leave_mid_download() {
    let (host, f) = ready(&proxying(), HostMode::FromHostJson).await;
    let done = PathBuf::from(format!("{}.stream-done", f.starts.display()));
    let res = get(&host, "/api/echo/stream/64").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(64 << 20));
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert!(
        !done.exists(),
        "the first bytes arrived before the handler finished writing"
    );
    // Byte i of the body is (i mod 1 MiB) mod 251.
    let mut position = 0usize;
    let mut same = true;
    let mut check = |chunk: &[u8]| {
        for &b in chunk {
            same &= b as usize == (position % (1 << 20)) % 251;
            position += 1;
        }
    };
    check(&first);
    while let Some(chunk) = body.next().await {
        check(&chunk.unwrap());
    }
    let received = position;
    assert_eq!(received, 64 << 20);
    assert!(same, "identical bytes");

    // Case 39: leave after the first bytes; the handler keeps serving.
    let res = get(&host, "/api/echo/stream/64").await;
    let mut body = res.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    for _ in 0..5 {
        assert_eq!(
            echo(&host, "/api/echo/after").await["path"],
            "/api/echo/after"
        );
    }
    assert_eq!(starts(&f), 1, "the handler never restarted");
}

#[tokio::test]
async fn case_35_redirects_are_not_followed() {
    let (host, _f) = ready(&proxying(), HostMode::FromHostJson).await;
    let res = get(&host, "/api/echo/redirect").await;
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "/x");
}

#[tokio::test]
async fn case_37_keys_are_checked_first_and_reach_the_handler() {
    let f = fixture(&proxying());
    let host = FunctionsHost::start(HostOptions {
        app_root: f.root.clone(),
        port: 0,
        mode: HostMode::FromHostJson,
        enforce_keys: true,
        executable: None,
        platform_env: vec![("FAKE_STARTS".into(), f.starts.display().to_string())],
    })
    .await
    .unwrap();
    assert!(host.ready(Duration::from_secs(20)).await);
    assert_eq!(get(&host, "/api/echo/x").await.status(), 401);
    let key = host.keys().function.clone();
    let echo = echo(&host, &format!("/api/echo/x?code={key}")).await;
    assert_eq!(echo["path"], format!("/api/echo/x?code={key}"));
}

#[tokio::test]
async fn case_38_a_body_over_the_limit_gets_the_hosts_500() {
    let (host, _f) = proxy_host(&[("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "1000")]).await;
    let declared = client()
        .put(format!("{}/api/echo/big", host.url))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 500, "Content-Length over the limit");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'y'; 500])).collect();
    let chunked = client()
        .put(format!("{}/api/echo/big", host.url))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 500, "a chunked body that grows past it");
    let small = client()
        .put(format!("{}/api/echo/small", host.url))
        .body(vec![b'z'; 900])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200, "under the limit");
}

#[tokio::test]
async fn case_40_misspelt_proxy_keys_are_ignored() {
    for key in ["enableHttpProxyingRequest", "http"] {
        let value = if key == "http" {
            json!({"enableProxying": true})
        } else {
            json!(true)
        };
        let spec = AppSpec {
            custom_handler: json!({ key: value }),
            ..AppSpec::default()
        };
        let (host, _f) = ready(&spec, HostMode::FromHostJson).await;
        let echo = echo(&host, "/api/echo/x?a=1&a=2").await;
        assert_eq!(echo["path"], "/api/echo/x?a=1%2C2", "{key}: forward mode");
        assert!(header(&echo, "x-ms-invocation-id").is_empty(), "{key}");
    }
}

#[tokio::test]
async fn host_mode_proxy_forces_proxying_whatever_host_json_says() {
    let (host, _f) = ready(&AppSpec::default(), HostMode::Proxy).await;
    let echo = echo(&host, "/api/echo/x?a=1&a=2").await;
    assert_eq!(echo["path"], "/api/echo/x?a=1&a=2");
    assert_eq!(header(&echo, "x-ms-invocation-id").len(), 1);
}

#[tokio::test]
async fn case_36_a_request_sent_before_the_handler_listens_still_succeeds() {
    // The handler binds 2 s after it starts; the request goes out at once.
    let (host, _f) = start(&proxying(), HostMode::FromHostJson, false, "bind-late").await;
    let echo = echo(&host, "/api/echo/early").await;
    assert_eq!(echo["path"], "/api/echo/early");
}
