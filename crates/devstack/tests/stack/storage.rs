//! Azurite over HTTPS with OAuth: our issuer's v1 tokens are accepted, others
//! are refused the way Azurite refuses them.

use crate::helpers::*;

#[tokio::test]
async fn azurite_accepts_issuer_tokens_over_https() {
    let s = start(true, |_| {}).await;
    let url = s.storage_url.clone().expect("Azurite started");
    let client = https(&s);
    let t = token(&s, "https://storage.azure.com", "").await;
    let container = format!("{url}/devstack-test-{}", uuid::Uuid::new_v4().simple());
    let put = |u: String| {
        client
            .put(u)
            .bearer_auth(&t)
            .header("x-ms-version", "2025-11-05")
    };
    assert_eq!(
        put(format!("{container}?restype=container"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let blob = format!("{container}/dir/hello.bin");
    let res = put(blob.clone())
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let got = client
        .get(&blob)
        .bearer_auth(&t)
        .header("x-ms-version", "2025-11-05")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &[0u8, 1, 2, 255]);

    // A Key Vault token is refused by Azurite (audience).
    let vault = token(&s, "https://vault.azure.net", "").await;
    let denied = client
        .get(&blob)
        .bearer_auth(&vault)
        .header("x-ms-version", "2025-11-05")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    s.stop().await;
}
