//! Every function through the host stand-in, in both modes.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

const SEED_VALUE: &str = "devstack-demo-value-not-a-real-secret";

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn problem(got: &Got, status: u16, stage: &str) {
    assert_eq!(got.status, status, "{}", got.text());
    // Payload mode: the host appends "; charset=utf-8" to JSON types (case 23).
    assert!(
        got.content_type.starts_with("application/problem+json"),
        "{}: {}",
        got.content_type,
        got.text()
    );
    assert_eq!(got.json()["stage"], stage, "{}", got.text());
}

#[tokio::test]
async fn health_in_both_modes() {
    for (mode, base) in modes() {
        let got = get(format!("{base}/api/health")).await;
        assert_eq!(got.status, 200, "{mode}");
        assert_eq!(got.json()["identity_source"], "app_service", "{mode}");
    }
}

#[tokio::test]
async fn token_shows_claims_in_both_modes() {
    let w = world();
    for (mode, base) in modes() {
        let got = get(format!("{base}/api/token?resource=https://vault.azure.net")).await;
        assert_eq!(got.status, 200, "{mode}: {}", got.text());
        let body = got.json();
        assert_eq!(body["claims"]["aud"], "https://vault.azure.net");
        assert_eq!(body["claims"]["oid"], w.get("APP1_OBJECT_ID"));
        assert!(
            !got.text().contains("eyJ"),
            "{mode}: no token in the response"
        );
        let bad = get(format!("{base}/api/token?resource=a&scope=b")).await;
        problem(&bad, 400, "request");
    }
}

#[tokio::test]
async fn secrets_metadata_versions_and_errors() {
    let w = world();
    let name = w.get("DEVSTACK_SEED_SECRET");
    for (mode, base) in modes() {
        let got = get(format!("{base}/api/secrets/{name}")).await;
        assert_eq!(got.status, 200, "{mode}: {}", got.text());
        let body = got.json();
        assert_eq!(body["name"], name);
        assert_eq!(body["enabled"], true);
        assert_eq!(body["content_type"], "text/plain");
        // No fingerprint: an unsalted hash lets anyone guess a weak secret offline.
        assert!(body.get("value_sha256").is_none(), "{mode}: {body}");
        assert!(!got.text().contains(&hex_sha256(SEED_VALUE.as_bytes())));
        assert!(
            body["updated"].is_string(),
            "{mode}: identified by version + updated"
        );
        assert!(
            body.get("value").is_none(),
            "{mode}: values are hidden by default"
        );
        assert!(!got.text().contains(SEED_VALUE));
        let version = body["version"].as_str().unwrap().to_owned();
        assert_eq!(version.len(), 32);

        let by_version = get(format!("{base}/api/secrets/{name}/{version}")).await;
        assert_eq!(by_version.json()["version"], version.as_str(), "{mode}");

        problem(
            &get(format!("{base}/api/secrets/no-such-secret")).await,
            404,
            "keyvault",
        );
        problem(
            &get(format!("{base}/api/secrets/bad_name")).await,
            400,
            "request",
        );
        problem(
            &get(format!("{base}/api/secrets/{}", "a".repeat(128))).await,
            400,
            "request",
        );
        problem(
            &get(format!("{base}/api/secrets/{name}/not-a-version")).await,
            400,
            "request",
        );
    }
}

#[tokio::test]
async fn blobs_round_trip_list_and_delete() {
    for (mode, base) in modes() {
        let container = format!("e2e-{mode}");
        let url = format!("{base}/api/blobs/{container}/dir/hello.txt");
        let put = send(
            Method::PUT,
            url.clone(),
            Some(("text/plain", b"hello from e2e".to_vec())),
        )
        .await;
        assert_eq!(put.status, 201, "{mode}: {}", put.text());
        assert_eq!(put.json()["size"], 14);

        let got = get(url.clone()).await;
        assert_eq!(
            (got.status, got.text().as_str()),
            (200, "hello from e2e"),
            "{mode}"
        );
        assert!(
            got.content_type.starts_with("text/plain"),
            "{mode}: {}",
            got.content_type
        );

        let list = get(format!("{base}/api/blobs/{container}")).await.json();
        let entry = &list["blobs"][0];
        assert_eq!(entry["name"], "dir/hello.txt", "{mode}");
        assert_eq!(entry["size"], 14);
        assert!(entry["etag"].is_string() && entry["last_modified"].is_string());

        assert_eq!(
            send(Method::DELETE, url.clone(), None).await.status,
            204,
            "{mode}"
        );
        problem(&get(url.clone()).await, 404, "storage");
        problem(&send(Method::DELETE, url, None).await, 404, "storage");
        problem(
            &get(format!("{base}/api/blobs/never-created")).await,
            404,
            "storage",
        );
    }
}

#[tokio::test]
async fn blobs_reach_only_allow_listed_containers_and_audit_is_read_only() {
    for (mode, base) in modes() {
        // The host's own containers, and any other: refused before Storage is called.
        for container in [
            "azure-webjobs-secrets",
            "deploymentpackage",
            "no-such-container",
        ] {
            for (method, url) in [
                (Method::GET, format!("{base}/api/blobs/{container}")),
                (Method::GET, format!("{base}/api/blobs/{container}/x")),
                (Method::PUT, format!("{base}/api/blobs/{container}/x")),
                (Method::DELETE, format!("{base}/api/blobs/{container}/x")),
            ] {
                let got = send(method.clone(), url, Some(("text/plain", b"x".to_vec()))).await;
                problem(&got, 403, "request");
                assert_eq!(
                    got.json()["type"],
                    "TROUBLESHOOTING.md#container-not-allowed"
                );
                assert!(
                    got.text().contains("BLOB_CONTAINERS"),
                    "{mode}: {}",
                    got.text()
                );
            }
        }
        // The audit container: listing works, writing and deleting do not.
        let list = get(format!("{base}/api/blobs/audit")).await;
        assert_eq!(list.status, 200, "{mode}: {}", list.text());
        for method in [Method::PUT, Method::DELETE] {
            let got = send(
                method,
                format!("{base}/api/blobs/audit/flow/forged.json"),
                Some(("application/json", b"{}".to_vec())),
            )
            .await;
            problem(&got, 403, "request");
            assert_eq!(got.json()["type"], "TROUBLESHOOTING.md#container-read-only");
        }
    }
}

#[tokio::test]
async fn listing_pages_with_max_and_a_marker() {
    let base = &world().forward;
    for i in 0..5 {
        let put = send(
            Method::PUT,
            format!("{base}/api/blobs/okay/pages/{i}.txt"),
            Some(("text/plain", b"p".to_vec())),
        )
        .await;
        assert_eq!(put.status, 201);
    }
    let mut names = vec![];
    let mut marker: Option<String> = None;
    for _ in 0..10 {
        let url = match &marker {
            Some(m) => format!("{base}/api/blobs/okay?max=2&marker={}", urlencode(m)),
            None => format!("{base}/api/blobs/okay?max=2"),
        };
        let page = get(url).await.json();
        let blobs = page["blobs"].as_array().unwrap();
        assert!(blobs.len() <= 2, "{page}");
        names.extend(blobs.iter().map(|b| b["name"].as_str().unwrap().to_owned()));
        match page["next_marker"].as_str() {
            Some(m) => marker = Some(m.to_owned()),
            None => break,
        }
    }
    let pages: Vec<_> = names.iter().filter(|n| n.starts_with("pages/")).collect();
    assert_eq!(pages.len(), 5, "{names:?}");
    for bad in ["0", "5001", "-1", "x"] {
        problem(
            &get(format!("{base}/api/blobs/okay?max={bad}")).await,
            400,
            "request",
        );
    }
}

#[tokio::test]
async fn downloads_cannot_become_pages_of_ours() {
    for (mode, base) in modes() {
        let url = format!("{base}/api/blobs/okay/xss-{mode}.html");
        let html = b"<script>alert(document.domain)</script>".to_vec();
        let put = send(Method::PUT, url.clone(), Some(("text/html", html))).await;
        assert_eq!(put.status, 201, "{mode}: {}", put.text());
        let got = get(url).await;
        assert_eq!(got.status, 200, "{mode}");
        assert_eq!(
            got.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{mode}"
        );
        assert_eq!(
            got.header("content-security-policy").as_deref(),
            Some("default-src 'none'; sandbox"),
            "{mode}"
        );
        assert!(
            got.header("content-disposition")
                .is_some_and(|d| d.starts_with("attachment")),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn a_blob_over_the_limit_is_refused_not_buffered() {
    // Written straight to Azurite (the handler would refuse the upload), then read through the handler.
    let base = &world().forward;
    // The handler creates the container on its first write.
    let seed = send(
        Method::PUT,
        format!("{base}/api/blobs/okay/seed.txt"),
        Some(("text/plain", b"s".to_vec())),
    )
    .await;
    assert_eq!(seed.status, 201);
    let big = vec![b'b'; 1024 * 1024 + 10];
    let token = world().storage_token();
    let url = format!("{}/okay/too-big.bin", world().get("STORAGE_ACCOUNT_URL"));
    let azurite = handler::http_client::build_with(
        Some(std::path::Path::new(world().get("DEVSTACK_CA_CERT"))),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let res = azurite
        .put(url)
        .bearer_auth(token)
        .header("x-ms-version", "2025-01-05")
        .header("x-ms-blob-type", "BlockBlob")
        .body(big)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let got = get(format!("{base}/api/blobs/okay/too-big.bin")).await;
    problem(&got, 422, "request");
    assert_eq!(got.json()["type"], "TROUBLESHOOTING.md#blob-too-large");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_blob_names_and_oversized_bodies_are_4xx() {
    for (mode, base) in modes() {
        for path in [
            "Bad_Container/x",
            "ab/x",
            &format!("okay/{}", "n".repeat(1025)),
        ] {
            let got = send(
                Method::PUT,
                format!("{base}/api/blobs/{path}"),
                Some(("text/plain", b"x".to_vec())),
            )
            .await;
            problem(&got, 400, "request");
        }
        // MAX_BODY_BYTES is 1 MiB for these handlers.
        if mode == "payload" {
            // Route values reach the handler decoded; in forward mode URL
            // normalisation (as in Kestrel) removes dot segments before it.
            let got = send(
                Method::PUT,
                format!("{base}/api/blobs/okay/%2E%2E%2Fx"),
                Some(("text/plain", b"x".to_vec())),
            )
            .await;
            problem(&got, 400, "request");
        }
        // Uploads stream within MAX_UPLOAD_BYTES (2 MiB here); payload mode
        // reads the envelope whole, within MAX_BODY_BYTES (1 MiB).
        let over_body_limit = vec![b'y'; 1024 * 1024 + 1];
        let got = send(
            Method::PUT,
            format!("{base}/api/blobs/okay/medium.txt"),
            Some(("text/plain", over_body_limit)),
        )
        .await;
        if mode == "payload" {
            problem(&got, 413, "request");
        } else {
            assert_eq!(got.status, 201, "{mode}: {}", got.text());
        }
        let big = vec![b'z'; 2 * 1024 * 1024 + 1];
        let got = send(
            Method::PUT,
            format!("{base}/api/blobs/okay/big.txt"),
            Some(("text/plain", big)),
        )
        .await;
        problem(&got, 413, "request");
        problem(
            &get(format!("{base}/api/blobs/okay/big.txt")).await,
            404,
            "storage",
        );
    }
}

#[tokio::test]
async fn binary_blobs_round_trip_in_forward_mode() {
    let base = &world().forward;
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let url = format!("{base}/api/blobs/binary/bytes.bin");
    let put = send(
        Method::PUT,
        url.clone(),
        Some(("application/octet-stream", data.clone())),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let got = get(url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, "application/octet-stream");
    assert_eq!(got.body.as_ref(), data.as_slice(), "byte-identical");
}

#[tokio::test]
async fn binary_upload_works_in_payload_mode_but_download_is_refused_clearly() {
    // The host base64-encodes octet-stream bodies; it cannot carry binary replies.
    let base = &world().payload;
    let url = format!("{base}/api/blobs/binary-payload/bytes.bin");
    let put = send(
        Method::PUT,
        url.clone(),
        Some(("application/octet-stream", vec![0, 255, 1, 254])),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let via_forward = get(format!(
        "{}/api/blobs/binary-payload/bytes.bin",
        world().forward
    ))
    .await;
    assert_eq!(via_forward.body.as_ref(), &[0, 255, 1, 254]);
    let got = get(url).await;
    assert_eq!(got.status, 406, "{}", got.text());
    assert!(got.text().contains("enableProxyingHttpRequest"));
}

#[tokio::test]
async fn app2_through_the_gate() {
    let w = world();
    for (mode, base) in modes() {
        let got = get(format!("{base}/api/app2/api/whoami?code=FUNCTION-KEY")).await;
        assert_eq!(got.status, 200, "{mode}: {}", got.text());
        let body = got.json();
        assert_eq!(body["object_id"], w.get("APP1_OBJECT_ID"));
        assert_eq!(body["app_id"], w.get("APP1_CLIENT_ID"));
        assert_eq!(body["roles"], json!(["App2.Access"]));
        // app2's own 404 passes through unchanged.
        assert_eq!(
            get(format!("{base}/api/app2/api/nothing-here"))
                .await
                .status,
            404,
            "{mode}"
        );
        problem(
            &get(format!("{base}/api/app2/..%2F..%2Fsecret")).await,
            400,
            "request",
        );
    }
}

#[tokio::test]
async fn flow_reports_every_step() {
    let w = world();
    for (mode, base) in modes() {
        let got = send(Method::POST, format!("{base}/api/flow"), None).await;
        assert_eq!(got.status, 200, "{mode}: {}", got.text());
        let body = got.json();
        assert_eq!(body["ok"], true);
        let names: Vec<&str> = body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["keyvault", "app2", "partner", "audit-write", "audit-read"]
        );
        let steps = &body["steps"];
        assert!(
            steps
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["ok"] == true && s["duration_ms"].is_number())
        );
        assert_eq!(
            steps[0]["detail"]["token_claims"]["aud"],
            "https://vault.azure.net"
        );
        assert!(steps[0]["detail"]["secret"].get("value_sha256").is_none());
        assert!(steps[0]["detail"]["secret"]["updated"].is_string());
        assert!(!got.text().contains(&hex_sha256(SEED_VALUE.as_bytes())));
        assert_eq!(steps[1]["detail"]["audience"], w.get("APP2_RESOURCE"));
        assert_eq!(
            steps[1]["detail"]["app2_view"]["object_id"],
            w.get("APP1_OBJECT_ID")
        );
        // The partner API, in another tenant, reached with no secret: the
        // user-assigned identity's assertion exchanged for a tenant-B token.
        let partner = &steps[2]["detail"];
        assert_eq!(
            partner["token_claims"]["tid"],
            w.get("DEVSTACK_PARTNER_TENANT_ID")
        );
        assert_eq!(
            partner["partner_view"]["app_id"],
            w.get("DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID")
        );
        assert_eq!(partner["partner_view"]["roles"][0], "Partner.Access");
        assert_eq!(
            partner["assertion_claims"]["sub"],
            w.get("DEVSTACK_UA_OBJECT_ID")
        );
        assert_eq!(
            partner["assertion_claims"]["aud"],
            "api://AzureADTokenExchange"
        );
        assert_eq!(steps[4]["detail"]["matches"], true);
        let text = got.text();
        assert!(
            !text.contains(SEED_VALUE) && !text.contains("eyJ"),
            "{mode}: no secret or token in the report"
        );

        // The audit record is in storage, without the secret value.
        let blob = steps[3]["detail"]["blob"].as_str().unwrap();
        let record = get(format!("{}/api/blobs/audit/{blob}", world().forward)).await;
        assert_eq!(record.status, 200);
        assert!(!record.text().contains(SEED_VALUE));
        assert_eq!(
            record.json()["secret"]["name"],
            w.get("DEVSTACK_SEED_SECRET")
        );
    }
}

#[tokio::test]
async fn routes_and_methods_are_enforced_by_the_host() {
    for (mode, base) in modes() {
        assert_eq!(
            send(Method::POST, format!("{base}/api/health"), None)
                .await
                .status,
            404,
            "{mode}: method constraint"
        );
        assert_eq!(get(format!("{base}/api/flow")).await.status, 404, "{mode}");
        assert_eq!(get(format!("{base}/api/nope")).await.status, 404, "{mode}");
        assert_eq!(
            get(format!("{base}/health")).await.status,
            404,
            "{mode}: route prefix required"
        );
    }
}
