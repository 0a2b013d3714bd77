//! Small helpers shared by the integration tests: privilege checks with a printed skip
//! reason, locating the `netmit` binary that `cargo xtask test` built, and private run
//! directories.

use std::{
    os::unix::fs::DirBuilderExt,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// A path of its own under the temp directory for one test's run directory (journal,
/// preload state), unique per process and call; not created (netmit creates it, 0700),
/// and removed with everything in it on drop.
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// `netmit-<tag>-<pid>-<n>`, cleared of anything a killed earlier run left there.
    pub fn new(tag: &str) -> RunDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "netmit-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        RunDir(d)
    }

    /// [`RunDir::new`], created (mode 0700) for files of the test's own next to netmit's
    /// run directory, which is [`RunDir::sub`]`("run")` then.
    pub fn created(tag: &str) -> RunDir {
        let d = RunDir::new(tag);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&d.0)
            .expect("creating the test's directory");
        d
    }

    /// `name` inside it.
    pub fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The restore journal netmit keeps there.
    pub fn journal(&self) -> PathBuf {
        self.0.join("journal.json")
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the tests run as root; prints the skip reason when not.
pub fn require_root(test: &str) -> bool {
    if netmit_user::sys::caps::is_root() {
        true
    } else {
        eprintln!(
            "SKIP {test}: needs root (BPF programs, network namespaces); run `sudo cargo xtask test`"
        );
        false
    }
}

/// Fails the test, naming the fix, when `name` is not an executable on `$PATH`: the
/// software nobody here wrote (memcached, redis, sockperf) is installed by
/// `cargo xtask setup`, so a missing one is a broken setup, not a reason to skip.
pub fn require_tool(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| panic!("{name} is not installed: `cargo xtask setup` installs it"))
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
