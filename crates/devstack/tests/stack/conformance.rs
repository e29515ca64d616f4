//! Real-client conformance: the official Python SDK (azure-identity, msal,
//! azure-keyvault-secrets, azure-storage-blob, PyJWT) against devstack,
//! unchanged apart from pointing it at local HTTPS. The clients are installed
//! into a project-local virtualenv (`.devstack/venv`) on first run.

use crate::helpers::*;
use std::path::{Path, PathBuf};

fn venv_python() -> PathBuf {
    devstack::conformance::python(&workspace_root())
}

#[tokio::test]
async fn official_python_clients_work_against_devstack() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let s = start(true, |_| {}).await;
    let env = s.env();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).unwrap().1.clone();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/check.py");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script)
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("MSI_ENDPOINT")
        .envs(env.iter().cloned())
        // check.py switches protocols itself, from these copies.
        .env("DS_IDENTITY_ENDPOINT", get("IDENTITY_ENDPOINT"))
        .env("DS_IDENTITY_HEADER", get("IDENTITY_HEADER"))
        .env("DS_MSI_ENDPOINT", get("MSI_ENDPOINT"))
        .env("DS_MSI_SECRET", get("MSI_SECRET"));
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "conformance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("BlobServiceClient round-trips"),
        "the blob checks ran"
    );
    s.stop().await;
}

/// The official `msgraph-sdk` (kiota) against the Graph stand-in, through
/// azure-identity's ManagedIdentityCredential on devstack's identity endpoint.
#[tokio::test]
async fn official_graph_sdk_works_against_the_graph_stand_in() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let s = start(false, |_| {}).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/check_graph.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env_remove("MSI_ENDPOINT")
        .envs(s.env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "Graph conformance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("9 Graph checks passed"), "every check ran");
    s.stop().await;
}

/// The official azure-identity `ClientAssertionCredential` and msal's
/// `ConfidentialClientApplication`, each presenting the managed identity's
/// token as a client assertion to the partner tenant's token endpoint: a
/// tenant-B token, or, with a wrong FIC, their usual errors with the AADSTS text.
#[tokio::test]
async fn official_clients_exchange_the_managed_identity_token_in_the_partner_tenant() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/check_federation.py");
    for (scenario, expected) in [
        (None, "4 federation checks passed"),
        (
            Some(devstack::scenario::Scenario::FicWrongSubject),
            "3 federation checks passed",
        ),
    ] {
        let s = start(false, |o| o.scenario = scenario).await;
        let mut cmd = tokio::process::Command::new(&python);
        // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a
        // session's `verify` (psf/requests#3829), which is how msal passes
        // its CA: without them, msal's own `verify=` is what counts.
        cmd.arg(&script)
            .env_remove("MSI_ENDPOINT")
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .envs(s.env());
        if scenario.is_some() {
            cmd.env("FIC_BROKEN", "1");
        }
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "federation conformance failed ({scenario:?}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expected), "every check ran: {stdout}");
        s.stop().await;
    }
}
