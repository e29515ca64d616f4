//! `cargo xtask package`: what the zip holds, with which modes, and whether
//! the packaged handler runs on the Functions host images (glibc 2.31).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn modes(zip: &Path) -> Vec<(String, u32)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let f = archive.by_index(i).unwrap();
            (f.name().to_owned(), f.unix_mode().unwrap() & 0o777)
        })
        .collect()
}

#[test]
fn case_30_fixture_holds_exactly_what_publish_uploads() {
    let root = std::env::temp_dir().join(format!("pkg-case30-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (path, content) in [
        ("handler", "#!/bin/sh\n"),
        (
            "host.json",
            r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#,
        ),
        ("hello/function.json", r#"{"bindings":[]}"#),
        ("local.settings.json", "{}"),
        (".funcignore", "target/\nsrc/\n"),
        (".gitignore", "target/\n"),
        ("target/debug/handler", "x"),
        ("src/main.rs", "fn main(){}"),
        (".git/config", "x"),
        (".vscode/settings.json", "{}"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let files = xtask::package_files(&root).unwrap();
    assert_eq!(files, ["handler", "hello/function.json", "host.json"]);
    let zip = root.join("out.zip");
    xtask::write_zip(&root, &files, &xtask::executable_name(&root).unwrap(), &zip).unwrap();
    assert_eq!(
        modes(&zip),
        [
            ("handler".into(), 0o777),
            ("hello/function.json".into(), 0o666),
            ("host.json".into(), 0o666)
        ]
    );
}

#[test]
fn the_repository_package_holds_only_run_time_files() {
    let root = repo_root();
    let files = xtask::package_files(&root).unwrap();
    let ignore = xtask::funcignore(&root).unwrap();
    for f in &files {
        assert!(
            !ignore
                .matched_path_or_any_parents(root.join(f), false)
                .is_ignore(),
            "{f} matches .funcignore"
        );
        for excluded in [
            "src/",
            "crates/",
            "target/",
            "tests/",
            ".devstack/",
            ".git/",
            "infra/",
        ] {
            assert!(!f.starts_with(excluded), "{f} should not ship");
        }
        assert!(
            !f.ends_with(".md") && f != "local.settings.json" && f != "Cargo.toml",
            "{f} should not ship"
        );
    }
    assert!(files.contains(&"host.json".to_owned()));
    for function in [
        "health",
        "token",
        "secrets",
        "blobs",
        "app2",
        "downstream",
        "whoami",
        "doctor",
        "flow",
    ] {
        assert!(
            files.contains(&format!("{function}/function.json")),
            "{function}/function.json is packaged"
        );
    }
}

/// Builds for real (cargo-zigbuild, a release build: minutes on first run).
/// Slow and installs tools (cargo-zigbuild from crates.io, ziglang from PyPI,
/// a second LTO release build): opt-in, so `cargo test --workspace` stays
/// quick. `.ci/run` runs it explicitly with `--ignored`.
#[test]
#[ignore = "slow: installs cargo-zigbuild and ziglang and builds the release package; .ci/run runs it"]
fn packaged_handler_starts_and_needs_glibc_2_31_at_most() {
    let root = repo_root();
    let package = xtask::package(&root).expect("cargo xtask package");
    let glibc = package.glibc.expect("a glibc-linked binary");
    assert!(
        glibc <= xtask::MAX_GLIBC,
        "needs GLIBC_{}.{}",
        glibc.0,
        glibc.1
    );

    let entries = modes(&package.zip);
    assert!(entries.contains(&("handler".into(), 0o777)), "{entries:?}");
    assert!(
        entries
            .iter()
            .filter(|(n, _)| n != "handler")
            .all(|(_, m)| *m == 0o666)
    );
    assert!(entries.iter().any(|(n, _)| n == "host.json"));

    // Unpack the handler as the host would (+x added) and start it.
    let dir = std::env::temp_dir().join(format!("pkg-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&package.zip).unwrap()).unwrap();
    let mut bytes = vec![];
    archive
        .by_name("handler")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let exe = dir.join("handler");
    std::fs::write(&exe, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(&exe)
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the packaged handler never answered"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
