//! Real-client conformance: the official Python SDK (azure-identity, msal,
//! azure-keyvault-secrets, azure-storage-blob, PyJWT) against devstack,
//! unchanged apart from pointing it at local HTTPS. The clients are installed
//! into a project-local virtualenv (`.devstack/venv`) on first run.

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn venv_python() -> PathBuf {
    let root = workspace_root();
    let venv = root.join(".devstack/venv");
    let python = venv.join("bin/python");
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let marker = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str())
    {
        return python;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the conformance test")
        .success();
    assert!(ok, "python3 -m venv failed");
    let ok = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .unwrap()
        .success();
    assert!(ok, "pip install of the official clients failed");
    std::fs::write(marker, wanted).unwrap();
    python
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
