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
    fs, io,
    os::fd::{BorrowedFd, OwnedFd},
};

use netmit_user::sys::{bpf, netns};

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
    netns::in_new_netns(|| {
        let netns = OwnedFd::from(fs::File::open("/proc/thread-self/ns/net")?);
        let link = bpf::xdp_link_create(prog, LOOPBACK_IFINDEX, true).map_err(io::Error::other)?;
        Ok(DispatcherPin {
            _link: link,
            _netns: netns,
        })
    })
    .map_err(io::Error::other)?
}
