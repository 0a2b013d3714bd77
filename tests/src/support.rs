//! Small helpers shared by the integration tests: privilege checks with a printed skip
//! reason, and locating the `netmit` binary that `cargo xtask test` built.

use std::path::PathBuf;

/// Whether the tests run as root; prints the skip reason when not.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if netmit_user::sys::caps::is_root() {
        true
    } else {
        eprintln!(
            "SKIP {test}: needs root (BPF programs, network namespaces); run `sudo cargo xtask test`"
        );
        false
    }
}

/// Path of the `netmit` binary: `$NETMIT_BIN` (set by `cargo xtask test`) or the
/// workspace's debug build.
pub fn netmit_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETMIT_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/netmit");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build` (or `cargo xtask test`) first",
        bin.display()
    );
    bin
}
