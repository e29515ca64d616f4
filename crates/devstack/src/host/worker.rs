//! The handler process: launch (executable, arguments, working directory and
//! the injected environment), readiness (`GET /` until any answer), console
//! classification, and the host's exit-code and restart rules.

use super::app::FunctionApp;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};

/// Exit code a handler uses to ask for a restart (not counted as an error).
pub const INTENTIONAL_RESTART: i32 = 200;
/// Counted errors that stop the host (consecutive errors ≤ 30 min apart).
const MAX_ERRORS: usize = 3;
const ERROR_WINDOW: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Starting,
    Ready {
        port: u16,
    },
    /// The handler is gone for good; the reason is the host's message.
    Stopped(String),
}

/// One line the handler wrote, classified as the host does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// `Information` (stdout), `Warning` (stderr containing "warn") or `Error`.
    pub level: &'static str,
    pub text: String,
}

pub struct Worker {
    status: watch::Receiver<Status>,
    shared: Arc<Shared>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the worker and its supervisor task both see.
#[derive(Default)]
struct Shared {
    console: Mutex<Vec<ConsoleLine>>,
    /// The environment of each start, for tests.
    starts: Mutex<Vec<BTreeMap<String, String>>>,
    restart: Notify,
    shutdown: AtomicBool,
    shutdown_notify: Notify,
    /// The running handler's process id (0 while none runs), for tests that
    /// measure its memory.
    pid: std::sync::atomic::AtomicU32,
}

/// What the worker needs to start the handler.
#[derive(Clone)]
pub struct LaunchSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub init_timeout: Duration,
}

/// Expands `%VAR%` from `env`; an unset placeholder is deleted.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if !after[..end].is_empty() && !after[..end].contains(' ') => {
                out.push_str(env.get(&after[..end]).map(String::as_str).unwrap_or(""));
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl LaunchSpec {
    /// Resolves the executable, arguments and directory as the host does (A1, A3).
    pub fn new(
        app: &FunctionApp,
        executable_override: Option<PathBuf>,
        env: BTreeMap<String, String>,
        port: u16,
    ) -> Self {
        let root = &app.root;
        let resolve_dir = |d: &str| {
            if d.is_empty() {
                root.clone()
            } else {
                root.join(d)
            }
        };
        let worker_dir = resolve_dir(&app.host.worker_directory);
        let exe = expand(&app.host.executable, &env);
        let program = match executable_override {
            Some(p) => p.display().to_string(),
            None if worker_dir.join(&exe).is_file() => worker_dir.join(&exe).display().to_string(),
            None => exe, // left for PATH lookup (node, python3, …)
        };
        // Items are expanded, joined with single spaces and split again, unquoted.
        let joined = app
            .host
            .arguments
            .iter()
            .map(|a| expand(a, &env))
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            program,
            args: joined.split_whitespace().map(str::to_owned).collect(),
            cwd: resolve_dir(&app.host.working_directory),
            env,
            port,
            init_timeout: app.host.initialization_timeout,
        }
    }
}

impl Worker {
    pub fn start(spec: LaunchSpec) -> Self {
        let (tx, rx) = watch::channel(Status::Starting);
        let shared = Arc::new(Shared::default());
        let supervisor = tokio::spawn(supervise(spec, tx, shared.clone()));
        Self {
            status: rx,
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        }
    }

    /// Waits until the handler is ready (its port) or gone (`None`).
    pub async fn ready(&self, timeout: Duration) -> Option<u16> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    Status::Ready { port } => return Some(*port),
                    Status::Stopped(_) => return None,
                    Status::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Kills and restarts the handler (the host does this after a function timeout).
    pub fn restart(&self) {
        self.shared.restart.notify_one();
    }

    pub fn console(&self) -> Vec<ConsoleLine> {
        self.shared.console.lock().unwrap().clone()
    }

    /// The process id of the handler now running, if one is.
    pub fn pid(&self) -> Option<u32> {
        Some(self.shared.pid.load(std::sync::atomic::Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// The environment of each start so far (tests check the injected variables).
    pub fn starts(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.starts.lock().unwrap().clone()
    }

    /// Stops the handler (the host kills it; there is no graceful signal).
    pub async fn stop(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.shutdown_notify.notify_one();
        let handle = self.supervisor.lock().unwrap().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

async fn supervise(spec: LaunchSpec, status: watch::Sender<Status>, shared: Arc<Shared>) {
    let mut errors: Vec<Instant> = vec![];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    loop {
        let _ = status.send(Status::Starting);
        let mut env = spec.env.clone();
        let worker_id = uuid::Uuid::new_v4().to_string();
        env.insert(
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID".into(),
            worker_id.clone(),
        );
        env.insert("FUNCTIONS_HTTPWORKER_ID".into(), worker_id);
        shared.starts.lock().unwrap().push(env.clone());
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        crate::azurite::die_with_parent(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = status.send(Status::Stopped(format!(
                    "could not start {}: {e}",
                    spec.program
                )));
                return;
            }
        };
        shared
            .pid
            .store(child.id().unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
        pipe_console(&mut child, shared.clone());

        // Readiness: any HTTP answer on GET / (404 included) within the timeout.
        let deadline = Instant::now() + spec.init_timeout;
        let url = format!("http://127.0.0.1:{}/", spec.port);
        let ready = loop {
            if http.get(&url).send().await.is_ok() {
                break true;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let mut intentional = false;
        if ready {
            let _ = status.send(Status::Ready { port: spec.port });
            tokio::select! {
                _ = child.wait() => {}
                _ = shared.restart.notified() => { intentional = true; let _ = child.kill().await; }
                _ = shared.shutdown_notify.notified() => {}
            }
        } else if child.try_wait().ok().flatten().is_none() {
            tracing::error!("Initializing HttpWorker timed out.");
            let _ = child.kill().await;
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            let _ = child.kill().await;
            let _ = status.send(Status::Stopped("host stopped".into()));
            return;
        }
        let code = child.wait().await.ok().and_then(|s| s.code());
        let last_stderr: Vec<String> = shared
            .console
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.level != "Information")
            .rev()
            .take(3)
            .map(|l| l.text.clone())
            .collect();
        match (ready, code) {
            (_, _) if intentional => tracing::info!("handler restarted by the host"),
            (true, Some(0)) => {
                let _ = status.send(Status::Stopped(
                    "handler exited with code 0; it is not restarted".into(),
                ));
                return;
            }
            (true, Some(INTENTIONAL_RESTART)) => {
                tracing::info!("handler asked for a restart (exit code 200)")
            }
            _ => {
                let now = Instant::now();
                if errors
                    .last()
                    .is_some_and(|t| now.duration_since(*t) > ERROR_WINDOW)
                {
                    errors.clear();
                }
                errors.push(now);
                tracing::error!(code, stderr = ?last_stderr, "handler exited with code {code:?}; restarting");
                if errors.len() >= MAX_ERRORS {
                    let _ = status.send(Status::Stopped(
                        "Exceeded http worker restart retry count. Shutting down Functions Host"
                            .into(),
                    ));
                    return;
                }
            }
        }
    }
}

/// stdout → Information; stderr → Warning if it mentions "warn", else Error.
fn pipe_console(child: &mut Child, shared: Arc<Shared>) {
    if let Some(out) = child.stdout.take() {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "handler", "{line}");
                shared.console.lock().unwrap().push(ConsoleLine {
                    level: "Information",
                    text: line,
                });
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let level = if line.to_ascii_lowercase().contains("warn") {
                    "Warning"
                } else {
                    "Error"
                };
                tracing::warn!(target: "handler", level, "{line}");
                shared
                    .console
                    .lock()
                    .unwrap()
                    .push(ConsoleLine { level, text: line });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_3_placeholders_are_expanded_or_deleted() {
        let env = BTreeMap::from([("DB".to_string(), "abc".to_string())]);
        assert_eq!(expand("--conn %DB%", &env), "--conn abc");
        assert_eq!(expand("--x %UNSET%", &env), "--x ");
        assert_eq!(expand("100%", &env), "100%");
    }
}
