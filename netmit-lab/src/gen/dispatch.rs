//! Keeping the generator's program registered in the kernel's XDP dispatcher, so that a
//! `BPF_PROG_TEST_RUN` call costs microseconds instead of two RCU grace periods.
//!
//! # Why
//!
//! `bpf_prog_test_run_xdp()` calls `bpf_prog_change_xdp(NULL, prog)` before a run with
//! `repeat > 1` and `bpf_prog_change_xdp(prog, NULL)` after it: it adds the program to the
//! XDP dispatcher (a trampoline that turns the indirect call into a direct one) and
//! removes it again. Each change rewrites the dispatcher image and waits for an RCU grace
//! period (`synchronize_rcu()` in `bpf_dispatcher_update()`): measured here at 23-40 ms
//! per call, whatever the number of frames. A paced generator makes thousands of calls a
//! second, so that would cap it near 40 calls (a few thousand frames) a second.
//!
//! The dispatcher keeps a use count per program: when the program is already in it, a
//! test run only takes and drops a reference, and the image is not touched. A program
//! enters the dispatcher when it is attached to a device in native or generic mode
//! (`dev_xdp_install()`). So the generator attaches its program, in generic mode, to the
//! loopback device of a private network namespace that it creates for that purpose
//! (`unshare(CLONE_NEWNET)` on a short-lived thread). Nothing ever flows through that
//! device, nothing outside can see it, and both go away with the [`DispatcherPin`]: the
//! link is closed (one last dispatcher update), then the namespace.
//!
//! Creating a network namespace needs CAP_SYS_ADMIN. Without it the generator still
//! works, just with the per-call cost (it logs a warning).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

/// `BPF_LINK_CREATE` (`enum bpf_cmd`).
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_XDP` (`enum bpf_attach_type`).
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, which every device supports.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// The loopback device's index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// The program's attachment in a private namespace; dropping it undoes everything.
#[derive(Debug)]
pub(crate) struct DispatcherPin {
    // Field order is drop order: detach the program first, then let the namespace go.
    _link: OwnedFd,
    _netns: OwnedFd,
}

/// Attaches `prog` (an XDP program) in generic mode to the loopback device of a new,
/// private network namespace.
pub(crate) fn pin(prog: BorrowedFd<'_>) -> io::Result<DispatcherPin> {
    let prog_fd = prog.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: unshare affects only this thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let path = CString::new("/proc/thread-self/ns/net").map_err(io::Error::other)?;
            // SAFETY: a valid path; the returned fd is owned below.
            let ns = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if ns < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `ns` is a fresh fd that nothing else owns.
            let netns = unsafe { OwnedFd::from_raw_fd(ns) };
            let link = link_create(prog_fd, LOOPBACK_IFINDEX)?;
            Ok(DispatcherPin {
                _link: link,
                _netns: netns,
            })
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// `BPF_LINK_CREATE` of an XDP program on `ifindex` (of the calling thread's namespace).
fn link_create(prog_fd: i32, ifindex: u32) -> io::Result<OwnedFd> {
    // union bpf_attr, link_create: prog_fd, target_ifindex, attach_type, flags, then
    // zeroes.
    let mut attr = [0u32; 16];
    attr[0] = prog_fd as u32;
    attr[1] = ifindex;
    attr[2] = BPF_XDP;
    attr[3] = XDP_FLAGS_SKB_MODE;
    // SAFETY: the attribute buffer is valid and as large as the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new link fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
