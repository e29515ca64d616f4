//! Azurite, the real Azure Storage emulator, run as a child process over HTTPS
//! with `--oauth basic` so bearer tokens from our issuer are accepted.
//!
//! The npm package is installed on first use into devstack's cache folder
//! (never globally), pinned to the last release that runs on Node.js 20.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// 3.36+ needs Node.js 22; this machine class has Node.js 20.
pub const AZURITE_VERSION: &str = "3.35.0";

/// Installs `azurite@AZURITE_VERSION` under `cache_dir` if needed; returns the
/// blob service's entry script.
pub fn ensure_installed(cache_dir: &Path) -> anyhow::Result<PathBuf> {
    node_version()?;
    let dir = cache_dir.join(format!("azurite-{AZURITE_VERSION}"));
    let main = dir.join("node_modules/azurite/dist/src/blob/main.js");
    if main.exists() {
        return Ok(main);
    }
    std::fs::create_dir_all(cache_dir)?;
    // Install beside the target and rename, so concurrent runs never see half an install.
    let staging = cache_dir.join(format!(
        ".azurite-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&staging)?;
    tracing::info!(version = AZURITE_VERSION, dir = %dir.display(), "installing Azurite from npm (first use only)");
    let status = std::process::Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&staging)
        .args([
            &format!("azurite@{AZURITE_VERSION}"),
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
        ])
        .stdin(Stdio::null())
        .status()
        .context("running npm (it ships with Node.js)")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("npm install azurite@{AZURITE_VERSION} failed ({status})");
    }
    if std::fs::rename(&staging, &dir).is_err() {
        // Another run finished first; use its copy.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !main.exists() {
        bail!("azurite installed, but {} is missing", main.display());
    }
    Ok(main)
}

fn node_version() -> anyhow::Result<String> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| anyhow::anyhow!("Node.js is required to run Azurite (npm package azurite@{AZURITE_VERSION}) but `node` was not found on PATH; install Node.js 20 (e.g. `apt-get install nodejs npm`), or pass --no-azurite"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Creates `containers` in the account at `account_url` (an existing one is
/// fine), with a Storage token for `identity`: what the Bicep does in Azure.
pub async fn create_containers(
    http: &reqwest::Client,
    account_url: &str,
    token: &str,
    containers: &[&str],
) -> anyhow::Result<()> {
    for name in containers {
        let res = http
            .put(format!("{account_url}/{name}?restype=container"))
            .bearer_auth(token)
            .header("x-ms-version", "2025-01-05")
            .header("Content-Length", "0")
            .send()
            .await?;
        // 409 ContainerAlreadyExists is what a redeploy sees too.
        if !(res.status().is_success() || res.status().as_u16() == 409) {
            anyhow::bail!(
                "creating container {name} in Azurite: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    pub port: u16,
}

impl Azurite {
    pub async fn start(main_js: &Path, port: u16, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let port = if port == 0 { crate::free_port()? } else { port };
        let mut cmd = Command::new("node");
        cmd.arg(main_js)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--oauth", "basic", "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key)
            // The Rust and Python SDKs send newer x-ms-version values than 3.35 knows.
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting node for Azurite")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = stderr.read_to_string(&mut err).await;
                }
                bail!("Azurite exited during startup ({status}): {}", err.trim());
            }
            if Instant::now() > deadline {
                bail!("Azurite did not listen on 127.0.0.1:{port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child, port })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// On Linux, ask the kernel to SIGTERM the child if devstack dies, so even a
/// `kill -9` of devstack leaves no orphan.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    unsafe {
        // SAFETY: prctl is async-signal-safe and touches no parent memory.
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
