//! `devstack up` as users run it: env file when ready, clean stop on SIGTERM.

use crate::helpers::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Signals devstack (`-TERM`, `-KILL`) and waits for it and all its children to be gone.
async fn signal_and_reap(
    child: &mut std::process::Child,
    signal: &str,
) -> std::process::ExitStatus {
    let kids = children_of(child.id());
    assert!(
        !kids.is_empty(),
        "devstack runs its children as child processes"
    );
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "devstack did not stop on {signal}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while kids.iter().any(|k| alive(*k)) {
        assert!(
            Instant::now() < deadline,
            "child processes outlived devstack: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}

#[tokio::test]
async fn up_writes_the_env_file_and_sigterm_leaves_no_process() {
    let dir = temp_dir("up");
    let env_file = dir.join("env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["up", "--env-file"])
        .arg(&env_file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--cache-dir")
        .arg(workspace_root().join(".devstack/cache"))
        // The stand-ins and Azurite; the host stand-in has its own tests.
        .arg("--no-host")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !env_file.exists() {
        assert!(child.try_wait().unwrap().is_none(), "devstack exited early");
        assert!(Instant::now() < deadline, "no env file within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let env: HashMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    for key in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "DEVSTACK_AUTHORITY",
        "DEVSTACK_TENANT_ID",
        "DEVSTACK_CA_CERT",
        "KEYVAULT_URL",
        "STORAGE_ACCOUNT_URL",
        "APP2_BASE_URL",
        "APP2_RESOURCE",
        "APP2_CLIENT_ID",
        "APP1_CLIENT_ID",
        "APP1_OBJECT_ID",
        "DEVSTACK_UA_CLIENT_ID",
        "DEVSTACK_UA_OBJECT_ID",
        "DEVSTACK_UA_RESOURCE_ID",
        "DEVSTACK_SEED_SECRET",
        "DEVSTACK_TRACES_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(
            env.get(key).is_some_and(|v| !v.is_empty()),
            "{key} missing from the env file"
        );
    }
    // `up` prints the trace page's URL, and the page is there.
    let traces = &env["DEVSTACK_TRACES_URL"];
    assert_eq!(&env["OTEL_EXPORTER_OTLP_ENDPOINT"], traces);
    let said = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(
        said.contains(&format!("open {traces}/ to see each run")),
        "{said}"
    );
    devstack::tls::install_crypto_provider();
    let page = reqwest::get(format!("{traces}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"diagram\""));
    assert!(env["STORAGE_ACCOUNT_URL"].ends_with("/devstoreaccount1"));
    assert!(std::path::Path::new(&env["DEVSTACK_CA_CERT"]).exists());

    // Azurite is the child here.
    let status = signal_and_reap(&mut child, "-TERM").await;
    assert!(status.success(), "{status}");
    assert!(!env_file.exists(), "the env file is removed on stop");
}

/// What the scripted handler echoes for `GET {base}/api/echo/hi`.
async fn echo_hi(base: &str) -> serde_json::Value {
    http()
        .get(format!("{base}/api/echo/hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A minimal app in `dir/app` run by the scripted handler from the host
/// tests: host.json names `executable` (with `arguments`), one `echo` function.
fn scripted_app(dir: &std::path::Path, executable: &str, arguments: &[&str]) -> std::path::PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("echo")).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host/fake_handler.py"),
        app.join("fake_handler.py"),
    )
    .unwrap();
    let host = serde_json::json!({"version": "2.0", "customHandler": {
        "description": {"defaultExecutablePath": executable, "arguments": arguments},
        "enableForwardingHttpRequest": true}, "extensions": {"http": {"routePrefix": "api"}}});
    std::fs::write(app.join("host.json"), host.to_string()).unwrap();
    std::fs::write(
        app.join("echo/function.json"),
        r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","route":"echo/{*rest}"},{"type":"http","direction":"out","name":"res"}]}"#,
    )
    .unwrap();
    app
}

/// Starts `devstack up` with the host for `app`; returns it and the env file's
/// FUNCTIONS_BASE_URL once written.
async fn up_with_host(
    dir: &std::path::Path,
    app: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> (std::process::Child, String) {
    let env_file = dir.join("env");
    let mut command = Command::new(env!("CARGO_BIN_EXE_devstack"));
    command
        .args(["up", "--no-azurite", "--host-port", "0", "--env-file"])
        .arg(&env_file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--app-root")
        .arg(app)
        .env("FAKE_STARTS", dir.join("starts.txt"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env_file.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "devstack exited early: {}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no env file within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&env_file).unwrap();
    let base = text
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS_BASE_URL="))
        .expect("FUNCTIONS_BASE_URL is in the env file")
        .to_owned();
    (child, base)
}

/// `devstack up` with the host stand-in (the default): FUNCTIONS_BASE_URL
/// serves the app, and SIGTERM stops the handler too.
#[tokio::test]
async fn up_with_the_host_serves_functions_base_url_and_stops_the_handler() {
    let dir = temp_dir("up-host");
    let app = scripted_app(&dir, "python3", &["fake_handler.py"]);
    let (mut child, base) = up_with_host(&dir, &app, &[]).await;
    let echo = echo_hi(&base).await;
    assert_eq!(echo["path"], "/api/echo/hi");
    // The handler was started by the host, with the host's environment.
    assert!(
        echo["env"]["FUNCTIONS_CUSTOMHANDLER_PORT"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    assert_eq!(echo["env"]["AZURE_FUNCTIONS_ENVIRONMENT"], "Development");

    // The handler is the child here.
    let status = signal_and_reap(&mut child, "-TERM").await;
    assert!(status.success(), "{status}");
}

/// A cargo package in `app` (so `cargo metadata` answers there) whose
/// host.json names a `handler` that is not in the app root: only cargo's
/// target directory has one.
fn cargo_app(dir: &std::path::Path) -> std::path::PathBuf {
    let app = scripted_app(dir, "handler", &[]);
    std::fs::write(
        app.join("Cargo.toml"),
        "[package]\nname = \"scripted-app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[lib]\npath = \"lib.rs\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(app.join("lib.rs"), "").unwrap();
    app
}

#[tokio::test]
async fn up_finds_the_handler_in_cargo_target_dir() {
    let dir = temp_dir("up-target-dir");
    let app = cargo_app(&dir);
    let target = dir.join("shared-cache");
    std::fs::create_dir_all(target.join("debug")).unwrap();
    let handler = target.join("debug/handler");
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\nexec python3 {}\n",
            app.join("fake_handler.py").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (mut child, base) = up_with_host(&dir, &app, &[("CARGO_TARGET_DIR", &target)]).await;
    let echo = echo_hi(&base).await;
    assert_eq!(
        echo["path"], "/api/echo/hi",
        "the handler in CARGO_TARGET_DIR answered"
    );
    let status = signal_and_reap(&mut child, "-TERM").await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn no_handler_anywhere_names_every_path_tried_and_the_build_command() {
    let dir = temp_dir("up-no-handler");
    let app = cargo_app(&dir);
    let target = dir.join("empty-cache");
    let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["up", "--no-azurite", "--host-port", "0", "--env-file"])
        .arg(dir.join("env"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--app-root")
        .arg(&app)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for tried in [
        target.join("debug/handler"),
        target.join("release/handler"),
        app.join("handler"),
    ] {
        assert!(
            stderr.contains(&tried.display().to_string()),
            "{} not named: {stderr}",
            tried.display()
        );
    }
    assert!(stderr.contains("cargo build -p handler"), "{stderr}");
}

/// Even a `kill -9` of devstack leaves no child behind (PR_SET_PDEATHSIG).
#[tokio::test]
async fn a_killed_devstack_takes_its_children_with_it() {
    let dir = temp_dir("up-kill");
    let env_file = dir.join("env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["up", "--no-host", "--env-file"])
        .arg(&env_file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--cache-dir")
        .arg(workspace_root().join(".devstack/cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !env_file.exists() {
        assert!(child.try_wait().unwrap().is_none(), "devstack exited early");
        assert!(Instant::now() < deadline, "no env file within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Azurite is the child here; the kill gives devstack no chance to stop it.
    let status = signal_and_reap(&mut child, "-KILL").await;
    assert!(!status.success());
}

/// `devstack demo` prints its report on stdout and writes the stack's and the
/// handler's log lines to the file it names (`--verbose` shows them instead).
#[tokio::test]
async fn demo_writes_the_logs_to_a_file_and_prints_only_its_report() {
    let dir = temp_dir("demo-logs");
    let app = scripted_app(&dir, "python3", &["fake_handler.py"]);
    let python = std::process::Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args([
            "demo",
            "--no-azurite",
            "--host-port",
            "0",
            "--handler",
            &python,
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--app-root")
        .arg(&app)
        .env("FAKE_STARTS", dir.join("starts.txt"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = dir.join("state/demo.log");
    assert!(
        stderr.contains(&format!("logs: {}", log.display())),
        "{stderr}"
    );
    assert!(stdout.contains("POST /api/flow"), "the report: {stdout}");
    assert!(stdout.contains("trace "), "and the trace link: {stdout}");
    // The scripted handler prints "hello" and "warning x" when it starts.
    for line in ["hello", "warning x"] {
        assert!(
            !stdout.contains(line) && !stderr.contains(line),
            "{line} on the console"
        );
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("hello") && logged.contains("warning x"),
        "{logged}"
    );
    assert!(!logged.contains('\u{1b}'), "no colour codes in the file");
}
