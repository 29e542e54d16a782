//! Builds the guest components for `wasm32-wasip2` with a nested cargo, the way
//! wasmtime's own test-programs are built, and copies them into OUT_DIR.
//!
//! The nested cargo gets its own target dir (sharing the outer one would make
//! both wait on the same lock) and a clean environment (the outer build's
//! RUSTFLAGS or wrapper are for the host target, not for wasm).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// (package, its directory, the file the build writes)
const GUESTS: &[(&str, &str, &str)] = &[
    ("provider-gong", "provider-gong", "provider_gong.wasm"),
    ("guest-hostile", "tests/guest-hostile", "guest_hostile.wasm"),
    ("guest-boundary", "benches/guest-boundary", "guest_boundary.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("artifacts/ sits in the workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // Each guest's whole folder (sources, manifest, build script) and what
    // every guest shares: the contract, the crates they use from the
    // workspace, the lock file, the guest profile.
    let guest_dirs = GUESTS.iter().map(|(_, dir, _)| dir.to_string());
    for watched in guest_dirs.chain(["wit".into(), "time".into(), "Cargo.lock".into(), "Cargo.toml".into()]) {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }

    ensure_target_installed();

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { workspace.join(d) })
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--profile", "guest", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_LLVM_COV",
        "CARGO_LLVM_COV_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| fail(&format!("could not run cargo to build the guests: {e}")));
    if !status.success() {
        fail("building the guest components failed (cargo's messages are above)");
    }

    for (package, _, file) in GUESTS {
        let built = target_dir.join(TARGET).join("guest").join(file);
        let copy = out_dir.join(file);
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|e| fail(&format!("{package} built, but {} could not be copied: {e}", built.display())));
        let var = file.trim_end_matches(".wasm").to_uppercase();
        println!("cargo:rustc-env={var}_WASM={}", copy.display());
    }
}

/// A missing target otherwise shows up as a cryptic "can't find crate for `core`".
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists()
    {
        fail(&format!("the Rust target {TARGET} is not installed; run `rustup target add {TARGET}` and build again"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}
