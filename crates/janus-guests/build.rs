//! Builds the embedded guests in guests/ with their own flags and hands the ELF images to
//! this crate through OUT_DIR.
//!
//! A guest is a `#![no_std]` program for the host target, linked static at 1 MiB by its own
//! linker script with no C start files (its own build.rs), and without SSE (see
//! `guest_rustflags`). It is a separate cargo project (not a workspace member)
//! built by a nested cargo with its own target directory and its own RUSTFLAGS, so none of the
//! outer build's flags or wrappers leak into it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Code generation flags for guests (the guest's own build.rs adds its link arguments).
fn guest_rustflags() -> String {
    [
        "-C".to_string(),
        "relocation-model=static".into(),
        "-C".into(),
        "no-redzone=yes".into(),
        "-C".into(),
        "target-cpu=x86-64".into(),
        // No SSE: hosts whose /dev/kvm emulates every instruction (kvm_pvm) run guests on KVM's
        // x86 instruction emulator, which has no SSE arithmetic (`xorps` fails there). The guest
        // has no floating point, so the ABI warning rustc prints for this does not apply.
        "-C".into(),
        "target-feature=-sse,-sse2".into(),
    ]
    .join("\x1f")
}

fn build_guest(name: &str, package: &str, out_dir: &Path) {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let dir = root.join("guests").join(name);
    let target_dir = out_dir.join("guest-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--offline",
            "--locked",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", guest_rustflags())
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTDOCFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build guest {name}: {e}"));
    assert!(status.success(), "building guest {name} failed");
    let built = target_dir.join(TARGET).join("release").join(package);
    let dest = out_dir.join(format!("{name}.elf"));
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    println!("cargo:rerun-if-changed={}", dir.join("src").display());
    println!("cargo:rerun-if-changed={}", dir.join("link.ld").display());
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("Cargo.toml").display()
    );
}

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    build_guest("demo", "janus-demo-guest", &out_dir);
    let abi = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../janus-abi/src");
    println!("cargo:rerun-if-changed={}", abi.display());
}
