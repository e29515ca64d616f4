//! The official Python clients, in a project-local virtualenv, for the
//! conformance and interop tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned clients (`conformance/requirements.txt`).
pub const REQUIREMENTS: &str = include_str!("../conformance/requirements.txt");

/// `<root>/.devstack/venv/bin/python` with the clients installed (created on
/// first use, re-installed when the requirements change).
pub fn python(root: &Path) -> PathBuf {
    let venv = root.join(".devstack/venv");
    let python = venv.join("bin/python");
    let marker = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(REQUIREMENTS) {
        return python;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the conformance tests")
        .success();
    assert!(ok, "python3 -m venv failed");
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).unwrap();
    let ok = xtask::pip_install(
        &python,
        &[std::ffi::OsStr::new("-r"), requirements.as_os_str()],
    )
    .expect("the virtualenv's python runs");
    assert!(ok, "pip install of the official clients failed");
    std::fs::write(marker, REQUIREMENTS).unwrap();
    python
}
