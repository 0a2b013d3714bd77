//! Who this process is: its effective user and capabilities.

/// `CAP_NET_ADMIN`.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`.
pub const CAP_NET_RAW: u32 = 13;
/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF` (Linux 5.8).
pub const CAP_BPF: u32 = 39;

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    euid() == 0
}

/// The effective capability set (`CapEff` of /proc/self/status), 0 if unreadable.
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Whether capability `cap` is in the effective set.
pub fn has(cap: u32) -> bool {
    effective() & (1u64 << cap) != 0
}

/// Whether this process may load and attach BPF programs: CAP_SYS_ADMIN, or CAP_BPF
/// together with CAP_NET_ADMIN, in the effective set.
pub fn has_bpf_privileges() -> bool {
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN))
}
