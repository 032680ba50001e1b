//! Build script: finds the libtorch that tch links against, sets an rpath to its library folder
//! (so `eemu` runs without LD_LIBRARY_PATH on the build machine), keeps `libtorch_cuda` linked when
//! that libtorch has it (the linker would otherwise drop it under `--as-needed` and CUDA would be
//! silently unavailable), and records the libtorch version for `eemu --version`.
use std::path::{Path, PathBuf};
use std::process::Command;

const PRINT_TORCH: &str = "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__)";

fn main() {
    for var in ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH", "VIRTUAL_ENV", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let (lib_dir, version) = locate_libtorch();
    let Some(lib_dir) = lib_dir else {
        println!("cargo:rustc-env=EEMU_LIBTORCH_VERSION={version}");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    // Only the engine binary (and the test and bench binaries, which may use tch) keep
    // libtorch_cuda; the `eemu` front binary must not load libtorch at all.
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib_dir.display());
        let arg = "-Wl,--no-as-needed,-ltorch_cuda,--as-needed";
        println!("cargo:rustc-link-arg-bin=eemu-engine={arg}");
        println!("cargo:rustc-link-arg-tests={arg}");
        println!("cargo:rustc-link-arg-benches={arg}");
    }
    println!("cargo:rustc-env=EEMU_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=EEMU_LIBTORCH_LIB={}", lib_dir.display());
}

/// Same precedence as torch-sys: `LIBTORCH_USE_PYTORCH` asks the Python torch package, otherwise
/// `LIBTORCH` (or `LIBTORCH_LIB`) names an unpacked libtorch.
fn locate_libtorch() -> (Option<PathBuf>, String) {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        if let Ok(out) = Command::new(python).arg("-c").arg(PRINT_TORCH).output() {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            if let (Some(dir), Some(version)) = (lines.next(), lines.next()) {
                return (Some(Path::new(dir).join("lib")), version.trim().to_string());
            }
        }
        return (None, "unknown".to_string());
    }
    let root = std::env::var_os("LIBTORCH_LIB").or_else(|| std::env::var_os("LIBTORCH"));
    match root {
        Some(root) => {
            let root = PathBuf::from(root);
            let version = std::fs::read_to_string(root.join("build-version"))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string());
            (Some(root.join("lib")), version)
        }
        None => (None, "unknown".to_string()),
    }
}
