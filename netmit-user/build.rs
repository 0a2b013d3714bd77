//! Builds the eBPF programs of `netmit-ebpf` for the BPF target and leaves the object in
//! `OUT_DIR/netmit`, which `netmit_user::ebpf` embeds. Needs the nightly toolchain with
//! `rust-src` and `bpf-linker`: `cargo xtask setup` installs both.
//!
//! This does what `aya-build` does (a nested `cargo +nightly build -Z build-std=core` for
//! `bpfel-unknown-none` with BTF), written out here for two reasons: aya-build forwards every
//! line of the nested build as a `cargo:warning` (about 70 lines, on every rebuild), and it
//! brings anyhow into the library's build. Here the nested build's output is kept in
//! `OUT_DIR/ebpf-build.log`, printed (as warnings) only when it fails, or when
//! `NETMIT_EBPF_VERBOSE=1` is set (`cargo -v` sets nothing a build script can see; `-vv`
//! also shows the log, as build script output).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn main() {
    if let Err(message) = build() {
        for line in message.lines() {
            println!("cargo:warning={line}");
        }
        eprintln!("{message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest
        .parent()
        .ok_or("netmit-user has no parent folder")?;
    // The programs, and the types they share with user space.
    for dir in ["netmit-ebpf", "netmit-common"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed={VERBOSE_ENV}");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb-unknown-none",
        _ => "bpfel-unknown-none",
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let target_dir = out_dir.join("ebpf-target");

    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "netmit-ebpf",
        "--bins",
    ])
    .args(["--release", "--target", target, "-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(workspace)
    // The same flags aya-build passes: the target architecture for aya-ebpf's cfg,
    // debug info and BTF (which the loader and the verifier's messages use).
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
    )
    // The outer build's compiler must not leak into the nightly one.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("RUSTC_WRAPPER")
    .stdin(Stdio::null());
    let output = cmd.output().map_err(|e| {
        format!(
            "building the eBPF programs: could not run `rustup run nightly cargo` ({e})\n\
             hint: run `cargo xtask setup` (installs nightly rust-src and bpf-linker)"
        )
    })?;
    let log = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    let log = String::from_utf8_lossy(&log);
    let log_path = out_dir.join("ebpf-build.log");
    fs::write(&log_path, log.as_bytes())
        .map_err(|e| format!("writing {}: {e}", log_path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "building the eBPF programs failed ({}):\n{log}\n\
             hint: run `cargo xtask setup` (installs nightly rust-src and bpf-linker)",
            output.status
        ));
    }
    // Asked for: as warnings, which cargo shows; otherwise visible with `cargo build -vv`.
    let prefix = if verbose() {
        "cargo:warning=ebpf: "
    } else {
        "ebpf: "
    };
    for line in log.lines() {
        println!("{prefix}{line}");
    }
    copy(
        &target_dir.join(target).join("release/netmit"),
        &out_dir.join("netmit"),
    )
}

/// Set to 1 to see the nested eBPF build's output even when it succeeds.
const VERBOSE_ENV: &str = "NETMIT_EBPF_VERBOSE";

fn verbose() -> bool {
    env::var(VERBOSE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}
