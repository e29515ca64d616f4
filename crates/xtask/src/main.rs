//! `cargo xtask test`, `cargo xtask package` (alias in .cargo/config.toml).

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    match std::env::args().nth(1).as_deref() {
        Some("package") => match xtask::package(&root) {
            Ok(p) => {
                println!(
                    "wrote {} ({} bytes, {:.1} MiB)",
                    p.zip.display(),
                    p.size,
                    p.size as f64 / 1048576.0
                );
                if let Some((major, minor)) = p.glibc {
                    println!("handler needs GLIBC_{major}.{minor} at most (host images have 2.31)");
                }
                println!("files:");
                for f in &p.files {
                    println!("  {f}");
                }
                println!(
                    "next: func azure functionapp publish <app> --custom   (run from {})",
                    root.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask package: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Some("test") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            match xtask::test(&root, &args) {
                Ok(status) if status.success() => std::process::ExitCode::SUCCESS,
                Ok(_) => std::process::ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("xtask test: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some("package-app2") => match xtask::package_app2(&root) {
            Ok((zip, size)) => {
                println!("wrote {} ({size} bytes)", zip.display());
                println!(
                    "next: az webapp deploy -g <rg> -n <app2> --src-path {} --type zip",
                    zip.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask package-app2: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask test [cargo test args] | package | package-app2");
            std::process::ExitCode::from(2)
        }
    }
}
