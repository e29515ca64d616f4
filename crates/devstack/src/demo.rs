//! `devstack demo`: start a stack and the host stand-in with the handler, run
//! `POST /api/flow`, and stop everything.

use crate::host::{FunctionsHost, HostMode, HostOptions};
use crate::stack::{Stack, StackOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the app and its handler are, and how the host dispatches.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub app_root: PathBuf,
    /// The handler executable (`None`: host.json's `defaultExecutablePath`).
    pub executable: Option<PathBuf>,
    pub mode: HostMode,
    pub enforce_keys: bool,
    /// The host's port (0 picks a free one).
    pub port: u16,
}

/// Starts the host stand-in for `app` against `stack`, and waits for the handler.
pub async fn start_host(stack: &Stack, app: &AppSpec) -> anyhow::Result<FunctionsHost> {
    let host = FunctionsHost::start(HostOptions {
        app_root: app.app_root.clone(),
        port: app.port,
        mode: app.mode,
        enforce_keys: app.enforce_keys,
        executable: app.executable.clone(),
        platform_env: stack.handler_env(),
    })
    .await?;
    anyhow::ensure!(
        host.ready(Duration::from_secs(60)).await,
        "the handler did not become ready: {:?}",
        host.shared.worker.status()
    );
    Ok(host)
}

/// What `POST /api/flow` answered.
pub struct Outcome {
    pub status: u16,
    pub body: Value,
}

impl Outcome {
    /// True only when every step passed.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.body["ok"] == true
    }
}

/// Runs the reference flow once, in a world of its own, and stops everything.
pub async fn run(stack: StackOptions, app: &AppSpec) -> anyhow::Result<Outcome> {
    let stack = Stack::start(stack).await?;
    let outcome = async {
        let host = start_host(&stack, app).await?;
        let response = reqwest::Client::new()
            .post(format!("{}/api/flow", host.url))
            .send()
            .await;
        host.stop().await;
        let response = response?;
        let status = response.status().as_u16();
        Ok(Outcome {
            status,
            body: response.json().await.unwrap_or_default(),
        })
    }
    .await;
    stack.stop().await;
    outcome
}
