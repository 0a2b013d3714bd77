//! `cargo xtask demo` is the README's first command: its output is what a new user reads,
//! so it must be netmit's own (no cargo build lines, no Rust debug output such as `Some(`)
//! and it must leave nothing behind. xtask builds quietly and runs this binary; here the
//! test build of the same binary runs against the test build of netmit.

use std::process::Command;

use tests::support::{netmit_bin, require_root};

#[test]
fn the_demo_runs_and_prints_only_netmits_output() {
    if !require_root("the_demo_runs_and_prints_only_netmits_output") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_netmit-demo"))
        .env("NETMIT_BIN", netmit_bin())
        .output()
        .expect("run netmit-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        for bad in ["Some(", "None)", "Compiling ", "Finished `", "Running `"] {
            assert!(!text.contains(bad), "the demo printed {bad:?}:\n{text}");
        }
    }
    // Every step ran: the headline steps are in the output.
    assert!(stdout.contains("==> "), "{stdout}");
    assert!(
        stdout.contains("netmit status"),
        "no status step:\n{stdout}"
    );
}
