//! What the running kernel really has, found without netmit: by the kernel functions that
//! implement each feature (in `/proc/kallsyms`), cross-checked against the mainline
//! release that introduced it. The compat tests (`tests/tests/compat.rs`, run on several
//! kernels by `cargo xtask test --kernels`) assert netmit's probes and fallbacks against
//! this, so that a probe that reads the wrong thing fails on some kernel.
//!
//! The symbols are entry points reached through function-pointer tables (netlink ops,
//! file operations) or exported, so the compiler cannot inline them away.

use std::{collections::HashSet, fs};

/// A kernel feature netmit probes or falls back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// The netdev generic-netlink family with dev-get (XDP feature flags).
    NetdevFamily,
    /// netdev napi-get.
    NapiGet,
    /// netdev napi-set (defer-hard-irqs, gro-flush-timeout).
    NapiSet,
    /// IRQ suspension (napi-set irq-suspend-timeout).
    IrqSuspend,
    /// Per-NAPI threaded through napi-set.
    NapiThreaded,
    /// The `EPIOCSPARAMS` epoll ioctl.
    EpollParams,
    /// AF_XDP sockets.
    AfXdp,
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`.
    XdpLiveFrames,
    /// The napi:napi_poll tracepoint, attachable as a raw tracepoint.
    NapiPollTracepoint,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 9] = [
        Feature::NetdevFamily,
        Feature::NapiGet,
        Feature::NapiSet,
        Feature::IrqSuspend,
        Feature::NapiThreaded,
        Feature::EpollParams,
        Feature::AfXdp,
        Feature::XdpLiveFrames,
        Feature::NapiPollTracepoint,
    ];

    /// The kernel function whose presence means the feature is there.
    pub fn symbol(self) -> &'static str {
        match self {
            Feature::NetdevFamily => "netdev_nl_dev_get_doit",
            Feature::NapiGet => "netdev_nl_napi_get_doit",
            Feature::NapiSet => "netdev_nl_napi_set_doit",
            Feature::IrqSuspend => "napi_suspend_irqs",
            Feature::NapiThreaded => "napi_set_threaded",
            Feature::EpollParams => "ep_eventpoll_ioctl",
            Feature::AfXdp => "xsk_bind",
            Feature::XdpLiveFrames => "bpf_test_run_xdp_live",
            Feature::NapiPollTracepoint => "__traceiter_napi_poll",
        }
    }

    /// The first mainline release with the feature.
    pub fn since(self) -> (u32, u32) {
        match self {
            Feature::NetdevFamily => (6, 3),
            Feature::NapiGet => (6, 8),
            Feature::NapiSet => (6, 13),
            Feature::IrqSuspend => (6, 13),
            Feature::NapiThreaded => (6, 17),
            Feature::EpollParams => (6, 9),
            Feature::AfXdp => (4, 18),
            Feature::XdpLiveFrames => (5, 18),
            Feature::NapiPollTracepoint => (5, 10),
        }
    }
}

/// The running kernel: its release and its function symbols.
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// (major, minor) from the release.
    pub version: (u32, u32),
    symbols: HashSet<String>,
}

impl Kernel {
    /// Reads `/proc/sys/kernel/osrelease` and `/proc/kallsyms` (names only; root sees them
    /// all). Panics when they cannot be read: the tests cannot judge anything then.
    pub fn running() -> Kernel {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .expect("/proc/sys/kernel/osrelease")
            .trim()
            .to_string();
        let version = parse_version(&release)
            .unwrap_or_else(|| panic!("kernel release {release:?} is not MAJOR.MINOR..."));
        let syms = fs::read_to_string("/proc/kallsyms").expect("/proc/kallsyms");
        let symbols = syms
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
            .collect::<HashSet<_>>();
        assert!(
            symbols.contains("xdp_do_redirect"),
            "/proc/kallsyms lists no function names here"
        );
        Kernel {
            release,
            version,
            symbols,
        }
    }

    /// Whether the kernel has `f` (by its symbol).
    pub fn has(&self, f: Feature) -> bool {
        self.symbols.contains(f.symbol())
    }

    /// Panics unless every feature's symbol agrees with the release it appeared in: a
    /// disagreement means this oracle is wrong (a renamed function, a backport), and
    /// then it must not be used to judge netmit.
    pub fn cross_check(&self) {
        let wrong: Vec<String> = Feature::ALL
            .iter()
            .filter(|f| self.has(**f) != (self.version >= f.since()))
            .map(|f| {
                format!(
                    "{f:?}: symbol {} {} but the feature is mainline since {}.{}",
                    f.symbol(),
                    if self.has(*f) { "present" } else { "absent" },
                    f.since().0,
                    f.since().1
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "kernel {}: the feature oracle disagrees with the kernel version:\n{}",
            self.release,
            wrong.join("\n")
        );
    }
}

/// `6.12.95+deb12-amd64` -> (6, 12).
pub fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Prints one cell of `cargo xtask test --kernels`' feature matrix: `row` is the feature,
/// `cell` what this kernel did (xtask collects these lines from the test output).
pub fn report(row: &str, cell: &str) {
    eprintln!("NETMIT-COMPAT: {row} = {cell}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.12.95+deb12-amd64"), Some((6, 12)));
        assert_eq!(parse_version("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(parse_version("6.18.0"), Some((6, 18)));
        assert_eq!(parse_version("x"), None);
    }
}
