//! `cargo xtask package`: build the Linux `handler` for the Functions host
//! images, and write the zip `func azure functionapp publish` would upload.

use anyhow::{Context, bail};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Functions host images for Linux are Debian bullseye: glibc 2.31.
pub const GLIBC_TARGET: &str = "x86_64-unknown-linux-gnu.2.31";
pub const MAX_GLIBC: (u32, u32) = (2, 31);
/// Pinned tools, installed into `.devstack/tools` on first use.
pub const ZIGLANG_VERSION: &str = "0.13.0.post1";
pub const CARGO_ZIGBUILD_VERSION: &str = "0.24.1";

/// Core Tools always leaves these out, whatever .funcignore says.
const ALWAYS_EXCLUDED_DIRS: &[&str] = &[".git", ".vscode"];
const ALWAYS_EXCLUDED_FILES: &[&str] = &[
    ".funcignore",
    ".gitignore",
    "local.settings.json",
    "project.lock.json",
];

/// Where cargo writes build output for the workspace at `root`, as cargo
/// itself decides (`CARGO_TARGET_DIR`, `build.target-dir`, else `<root>/target`):
/// `cargo metadata --format-version 1 --no-deps` says.
pub fn cargo_target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .with_context(|| format!("running cargo metadata in {}", root.display()))?;
    if !out.status.success() {
        bail!(
            "cargo metadata in {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no target_directory")
}

/// Where the trace-page tests find Chromium (Debian's `chromium` package),
/// unless `CHROMIUM` names another.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure the browser the tests need is there: Debian's `chromium`,
/// installed with apt-get when missing (as root, or through sudo). Where it
/// cannot be installed, the error says what is missing and the command.
pub fn ensure_chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHROMIUM));
    if path.is_file() {
        return Ok(path);
    }
    let install = "sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium";
    if std::env::var_os("CHROMIUM").is_some() {
        bail!("CHROMIUM names {}, which does not exist", path.display());
    }
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("apt-get") {
        bail!(
            "{CHROMIUM} is missing and this machine has no apt-get: install Chromium and set CHROMIUM to its path (on Debian or Ubuntu: {install})"
        );
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let prefix: &[&str] = if root {
        &[]
    } else if has("sudo") {
        &["sudo"]
    } else {
        bail!("{CHROMIUM} is missing, and installing it needs root: {install}");
    };
    eprintln!("installing Debian's chromium for the trace page tests (apt-get)…");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut all: Vec<&str> = prefix.to_vec();
        all.extend_from_slice(args);
        let ok = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running {}", all.join(" ")))?
            .success();
        if !ok {
            bail!(
                "`{}` failed; install Chromium yourself: {install}",
                all.join(" ")
            );
        }
        Ok(())
    };
    run(&["apt-get", "update", "-qq"])?;
    run(&[
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
    ])?;
    if !path.is_file() {
        bail!("apt-get installed chromium, but {CHROMIUM} is still missing");
    }
    Ok(path)
}

/// `cargo xtask test`: what the tests need (Chromium), then
/// `cargo test --workspace` with any further arguments.
pub fn test(root: &Path, args: &[String]) -> anyhow::Result<std::process::ExitStatus> {
    let chromium = ensure_chromium()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // What `cargo run` set for this binary must not reach the build: crates
    // that read these would be rebuilt, and rebuilt again by a plain `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(["test", "--workspace"])
        .args(args)
        .env("CHROMIUM", chromium)
        .current_dir(root)
        .status()
        .context("running cargo test --workspace")
}

/// `.funcignore` as a gitignore matcher (an absent file ignores nothing).
pub fn funcignore(root: &Path) -> anyhow::Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(root);
    let file = root.join(".funcignore");
    if file.exists()
        && let Some(e) = builder.add(&file)
    {
        return Err(e.into());
    }
    Ok(builder.build()?)
}

/// The files the publish zip holds, relative to `root`, `/`-separated, sorted.
pub fn package_files(root: &Path) -> anyhow::Result<Vec<String>> {
    let ignore = funcignore(root)?;
    let mut out = vec![];
    walk(root, root, &ignore, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, ignore: &Gitignore, out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type()?.is_dir();
        if is_dir && dir == root && ALWAYS_EXCLUDED_DIRS.contains(&name.as_str()) {
            continue;
        }
        if !is_dir && dir == root && ALWAYS_EXCLUDED_FILES.contains(&name.as_str()) {
            continue;
        }
        if ignore
            .matched_path_or_any_parents(&path, is_dir)
            .is_ignore()
        {
            continue;
        }
        if is_dir {
            walk(root, &path, ignore, out)?;
        } else {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

/// `customHandler.description.defaultExecutablePath`, as written.
pub fn executable_name(root: &Path) -> anyhow::Result<String> {
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("host.json"))?)?;
    host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .map(str::to_owned)
        .context("host.json has no customHandler.description.defaultExecutablePath")
}

/// Writes the zip: the executable gets mode 0777, every other file 0666, as
/// Core Tools writes them (a zip "made by Unix").
pub fn write_zip(
    root: &Path,
    files: &[String],
    executable: &str,
    out: &Path,
) -> anyhow::Result<u64> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out)?);
    for file in files {
        let mode = if file == executable { 0o777 } else { 0o666 };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(file.as_str(), options)?;
        zip.write_all(&std::fs::read(root.join(file))?)?;
    }
    zip.finish()?;
    Ok(std::fs::metadata(out)?.len())
}

/// The highest `GLIBC_x.y` version a binary needs (from `.gnu.version_r`).
pub fn max_glibc(binary: &Path) -> anyhow::Result<Option<(u32, u32)>> {
    use object::read::elf::{ElfFile64, FileHeader};
    let data = std::fs::read(binary)?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data)?;
    let endian = elf.endian();
    let sections = elf.elf_header().sections(endian, &*data)?;
    let mut max: Option<(u32, u32)> = None;
    if let Some((mut verneeds, link)) = sections.gnu_verneed(endian, &*data)? {
        let strings = sections.strings(endian, &*data, link)?;
        while let Some((_, mut auxs)) = verneeds.next()? {
            while let Some(aux) = auxs.next()? {
                let name = String::from_utf8_lossy(aux.name(endian, strings)?).into_owned();
                if let Some(v) = name.strip_prefix("GLIBC_") {
                    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
                    max = max.max(Some(version));
                }
            }
        }
    }
    Ok(max)
}

/// `python -m pip install --quiet --disable-pip-version-check <args>`: the one
/// way this workspace installs from PyPI (zig here, the official Python
/// clients in devstack). `Ok(false)` when pip ran and failed.
pub fn pip_install(python: &Path, args: &[&OsStr]) -> std::io::Result<bool> {
    Ok(Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(args)
        .status()?
        .success())
}

/// Installs ziglang (PyPI) and cargo-zigbuild (crates.io) under
/// `<root>/.devstack/tools` if needed; returns (zig dir, cargo-zigbuild path).
pub fn ensure_tools(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tools = root.join(".devstack/tools");
    let zig_dir = tools.join(format!("ziglang-{ZIGLANG_VERSION}"));
    let zig = zig_dir.join("ziglang/zig");
    if !zig.exists() {
        eprintln!(
            "installing ziglang=={ZIGLANG_VERSION} from PyPI into {}",
            zig_dir.display()
        );
        let target = zig_dir.as_os_str();
        let package = format!("ziglang=={ZIGLANG_VERSION}");
        let ok = pip_install(
            Path::new("python3"),
            &[OsStr::new("--target"), target, OsStr::new(&package)],
        )
        .context("python3 -m pip (Python 3 is needed to install zig)")?;
        if !ok || !zig.exists() {
            bail!("could not install ziglang=={ZIGLANG_VERSION}");
        }
    }
    let cargo_root = tools.join(format!("cargo-zigbuild-{CARGO_ZIGBUILD_VERSION}"));
    let zigbuild = cargo_root.join("bin/cargo-zigbuild");
    if !zigbuild.exists() {
        eprintln!(
            "installing cargo-zigbuild {CARGO_ZIGBUILD_VERSION} from crates.io into {}",
            cargo_root.display()
        );
        let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "cargo-zigbuild",
                "--locked",
                "--version",
                CARGO_ZIGBUILD_VERSION,
                "--root",
            ])
            .arg(&cargo_root)
            .status()
            .context("cargo install")?
            .success();
        if !ok {
            bail!("could not install cargo-zigbuild {CARGO_ZIGBUILD_VERSION}");
        }
    }
    Ok((zig.parent().unwrap().to_path_buf(), zigbuild))
}

/// Builds the release `handler` for glibc 2.31 with cargo-zigbuild, in its own
/// target directory (so it can run while another cargo holds `target/`).
pub fn build_handler(root: &Path) -> anyhow::Result<PathBuf> {
    build_linux(root, "handler")
}

/// `app2` for App Service Linux: the binary alone, zipped with mode 0777
/// (its startup command is `./app2`).
pub fn package_app2(root: &Path) -> anyhow::Result<(PathBuf, u64)> {
    let built = build_linux(root, "app2")?;
    let dir = cargo_target_dir(root)?.join("package");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&built, dir.join("app2"))?;
    let zip = dir.join("app2.zip");
    let size = write_zip(&dir, &["app2".to_owned()], "app2", &zip)?;
    Ok((zip, size))
}

fn build_linux(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let (zig_dir, zigbuild) = ensure_tools(root)?;
    // Its own directory (another target triple and profile), beside cargo's.
    let target_dir = cargo_target_dir(root)?.join("package-build");
    let path = format!(
        "{}:{}",
        zig_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    eprintln!("building {package} for {GLIBC_TARGET} (cargo-zigbuild)");
    let ok = Command::new(&zigbuild)
        .args([
            "zigbuild",
            "--release",
            "-p",
            package,
            "--bin",
            package,
            "--target",
            GLIBC_TARGET,
        ])
        .current_dir(root)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("running cargo-zigbuild")?
        .success();
    if !ok {
        bail!("cargo zigbuild failed");
    }
    Ok(target_dir
        .join("x86_64-unknown-linux-gnu/release")
        .join(package))
}

/// What `package` produced.
pub struct Package {
    pub zip: PathBuf,
    pub size: u64,
    pub files: Vec<String>,
    pub glibc: Option<(u32, u32)>,
}

/// Build, copy to `<root>/handler`, and write `<target dir>/package/function-app.zip`.
pub fn package(root: &Path) -> anyhow::Result<Package> {
    let built = build_handler(root)?;
    let glibc = max_glibc(&built)?;
    if let Some(v) = glibc
        && v > MAX_GLIBC
    {
        bail!(
            "the handler needs GLIBC_{}.{}, newer than the host images' 2.31",
            v.0,
            v.1
        );
    }
    let executable = executable_name(root)?;
    let dest = root.join(&executable);
    std::fs::copy(&built, &dest)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    }
    let files = package_files(root)?;
    if !files.contains(&executable) {
        bail!("{executable} is not in the package: check .funcignore");
    }
    let zip = cargo_target_dir(root)?.join("package/function-app.zip");
    let size = write_zip(root, &files, &executable, &zip)?;
    Ok(Package {
        zip,
        size,
        files,
        glibc,
    })
}
