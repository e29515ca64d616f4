//! A blob written through the handler is readable with the official Python
//! `azure-storage-blob` client, and the reverse.

use crate::helpers::*;
use reqwest::Method;
use std::process::Command;

fn python() -> std::path::PathBuf {
    devstack::conformance::python(&root())
}

#[tokio::test]
async fn python_blob_client_reads_what_the_handler_wrote_and_back() {
    let w = world();
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = send(
        Method::PUT,
        format!("{}/api/blobs/interop/from-rust.bin", w.forward),
        Some(("application/octet-stream", data.clone())),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());

    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = r#"
import os, sys
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient
bsc = BlobServiceClient(os.environ["STORAGE_ACCOUNT_URL"], credential=ManagedIdentityCredential(), connection_verify=os.environ["DEVSTACK_CA_CERT"])
got = bsc.get_blob_client("interop", "from-rust.bin").download_blob().readall()
expected = bytes((i * 7 % 251) for i in range(5000))
assert got == expected, "python read different bytes"
bsc.get_blob_client("interop", "from-python.txt").upload_blob(b"written by azure-storage-blob", overwrite=True)
print("python ok")
"#;
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script);
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    cmd.env_remove("MSI_ENDPOINT").env_remove("MSI_SECRET");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let back = get(format!("{}/api/blobs/interop/from-python.txt", w.forward)).await;
    assert_eq!(
        (back.status, back.text().as_str()),
        (200, "written by azure-storage-blob")
    );
}
