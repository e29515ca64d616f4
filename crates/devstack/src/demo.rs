//! `devstack demo`: start a stack and the host stand-in with the handler, run
//! `POST /api/flow` under a trace of its own, and stop everything.

use crate::host::{FunctionsHost, HostMode, HostOptions};
use crate::stack::{EXPORT_DELAY, Stack, StackOptions};
use crate::traces::SpanRecord;
use serde_json::Value;
use std::path::{Path, PathBuf};
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

/// A cargo build profile the handler may have been built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The profile's folder under cargo's target directory.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// No handler where one was looked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "no handler executable found; looked for {}. Build it with `cargo build -p handler{}` (or pass --handler PATH)",
    tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    if *release { " --release" } else { "" }
)]
pub struct HandlerNotFound {
    /// Every path looked at, in order.
    pub tried: Vec<PathBuf>,
    release: bool,
}

/// The handler for the app at `app_root`: what cargo built there for the
/// first of `profiles` that has one (wherever `CARGO_TARGET_DIR` or
/// `build.target-dir` put it), else host.json's `defaultExecutablePath` when
/// that exists (a packaged app). `None` means "the host's default".
pub fn locate_handler(
    app_root: &Path,
    profiles: &[Profile],
) -> Result<Option<PathBuf>, HandlerNotFound> {
    let mut tried = vec![];
    // An app root outside a cargo workspace (a packaged app) has no target dir.
    if let Ok(target) = xtask::cargo_target_dir(app_root) {
        for profile in profiles {
            let built = target.join(profile.dir()).join("handler");
            if built.is_file() {
                return Ok(Some(built));
            }
            tried.push(built);
        }
    }
    if let Ok(app) = crate::host::app::FunctionApp::load(app_root) {
        let default = &app.host.executable;
        let in_app = app_root.join(&app.host.worker_directory).join(default);
        let on_path = !default.contains('/')
            && std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(default).is_file()));
        if in_app.is_file() || on_path {
            return Ok(None);
        }
        tried.push(in_app);
    }
    Err(HandlerNotFound {
        tried,
        release: profiles.first() == Some(&Profile::Release),
    })
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

/// What `POST /api/flow` answered, and the run's trace.
pub struct Outcome {
    pub status: u16,
    pub body: Value,
    /// The trace the flow ran under (the demo sent its `traceparent`).
    pub trace_id: String,
    /// The page that draws this run (live while the stack runs).
    pub page_url: String,
    /// The run's spans as the viewer received them, from app1 and app2.
    pub spans: Vec<SpanRecord>,
}

impl Outcome {
    /// True only when every step passed.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.body["ok"] == true
    }

    /// What `devstack demo` prints after the report: the trace and its page.
    pub fn trace_lines(&self) -> String {
        let mut services: Vec<&str> = self.spans.iter().map(|s| s.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        format!(
            "trace {} ({} spans from {})\npage  {}\n",
            self.trace_id,
            self.spans.len(),
            services.join(" and "),
            self.page_url
        )
    }
}

/// A new W3C `traceparent` (sampled) and its trace id.
pub fn new_traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// Sends `POST /api/flow` through `host_url` with a fresh `traceparent`;
/// returns the status, the body and the trace id.
pub async fn post_flow(host_url: &str) -> anyhow::Result<(u16, Value, String)> {
    let (traceparent, trace_id) = new_traceparent();
    let response = reqwest::Client::new()
        .post(format!("{host_url}/api/flow"))
        .header("traceparent", traceparent)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default(), trace_id))
}

/// The trace's spans once app1's server span (which ends last) has arrived,
/// plus a batch interval for app2's; whatever is there after `patience`.
pub async fn wait_for_trace(stack: &Stack, trace_id: &str, patience: Duration) -> Vec<SpanRecord> {
    let deadline = tokio::time::Instant::now() + patience;
    let has_root = |spans: &[SpanRecord]| {
        spans
            .iter()
            .any(|s| s.service == "app1" && s.kind == "server")
    };
    loop {
        let spans = stack.traces.spans(trace_id).unwrap_or_default();
        if has_root(&spans) {
            tokio::time::sleep(EXPORT_DELAY * 2 + Duration::from_millis(100)).await;
            return stack.traces.spans(trace_id).unwrap_or_default();
        }
        if tokio::time::Instant::now() >= deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the flow once against a started stack and host.
pub async fn run_flow(stack: &Stack, host: &FunctionsHost) -> anyhow::Result<Outcome> {
    let (status, body, trace_id) = post_flow(&host.url).await?;
    let spans = wait_for_trace(stack, &trace_id, Duration::from_secs(10)).await;
    Ok(Outcome {
        status,
        body,
        page_url: format!("{}/?trace={trace_id}", stack.traces_url),
        trace_id,
        spans,
    })
}

/// Runs the reference flow once, in a world of its own, and stops everything.
pub async fn run(stack: StackOptions, app: &AppSpec) -> anyhow::Result<Outcome> {
    let stack = Stack::start(stack).await?;
    let outcome = async {
        let host = start_host(&stack, app).await?;
        let outcome = run_flow(&stack, &host).await;
        host.stop().await;
        outcome
    }
    .await;
    stack.stop().await;
    outcome
}
