//! `netmit check`: what this kernel and NIC support, found by trying rather than by
//! reading version numbers, and the fallback netmit uses where something is missing.
//!
//! Intrusive probes never touch a real interface: XDP attach modes are tried on a
//! throwaway tap device inside a private network namespace that vanishes with the probe
//! thread. Per-interface probes only read (XDP feature flags, NAPI and coalescing
//! replies) or write a value back unchanged (napi-set).

use std::{ffi::CString, fs, os::fd::FromRawFd, thread};

use aya::programs::{Xdp, XdpMode};
use serde::Serialize;

use crate::{
    classify::{Classifier, Program},
    ebpf::{load_object, pins},
    sys::{coalesce, link as kernel, napi},
};
use netmit_common::names;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// What was probed.
    pub feature: &'static str,
    /// Whether it works.
    pub works: bool,
    /// What the probe found (the error when it failed).
    pub detail: String,
    /// What netmit does when it does not work.
    pub fallback: &'static str,
}

fn probe(feature: &'static str, result: Result<String, String>, fallback: &'static str) -> Probe {
    match result {
        Ok(detail) => Probe {
            feature,
            works: true,
            detail,
            fallback,
        },
        Err(detail) => Probe {
            feature,
            works: false,
            detail,
            fallback,
        },
    }
}

/// Probes of the kernel as a whole.
pub fn system() -> Vec<Probe> {
    let mut out = Vec::new();
    out.push(probe(
        "bpffs at /sys/fs/bpf",
        if pins::bpffs_mounted() {
            Ok("mounted".into())
        } else {
            Err("not mounted".into())
        },
        "none: netmit's pins need it (mount -t bpf bpf /sys/fs/bpf)",
    ));
    out.push(probe(
        "BPF program load and BPF_PROG_TEST_RUN",
        Classifier::new(Program::Pass, &[])
            .and_then(|c| c.time(&[0u8; 64], 1))
            .map(|d| format!("an XDP_PASS run took {} ns", d.as_nanos()))
            .map_err(|e| crate::error::chain(&e)),
        "none: classify and the benchmarks need it",
    ));
    let scratch = on_scratch_tap();
    out.push(probe(
        "XDP native (driver) mode, via bpf_link",
        scratch.native,
        "attach --mode auto uses generic mode",
    ));
    out.push(probe(
        "XDP generic (skb) mode, via bpf_link",
        scratch.generic,
        "none: netmit needs XDP",
    ));
    out.push(probe(
        "AF_XDP socket bound in copy mode",
        scratch.xsk_copy,
        "none for AF_XDP steering; xsk rules fall back to the kernel stack",
    ));
    out.push(probe(
        "AF_XDP socket bound in zero-copy mode (scratch tap)",
        scratch.xsk_zerocopy,
        "copy mode (zero-copy needs driver support; see the per-device probe)",
    ));
    let support = napi::kernel_support();
    out.push(probe(
        "netdev netlink napi-get",
        match &support {
            Ok(s) if s.napi_get => Ok("napi-get answers".into()),
            Ok(_) => Err("the netdev family has no napi-get".into()),
            Err(e) => Err(crate::error::chain(e)),
        },
        "NAPI ids and per-NAPI values cannot be listed; device-wide sysfs values are shown",
    ));
    for (feature, param, fallback) in [
        (
            "napi-set defer-hard-irqs",
            napi::NapiParam::DeferHardIrqs,
            "device-wide sysfs napi_defer_hard_irqs",
        ),
        (
            "napi-set gro-flush-timeout",
            napi::NapiParam::GroFlushTimeout,
            "device-wide sysfs gro_flush_timeout",
        ),
        (
            "napi-set irq-suspend-timeout (IRQ suspension)",
            napi::NapiParam::IrqSuspendTimeout,
            "none: the suspend mode is unavailable; defer mode is used instead",
        ),
        (
            "napi-set threaded",
            napi::NapiParam::Threaded,
            "device-wide sysfs threaded",
        ),
    ] {
        out.push(probe(
            feature,
            match &support {
                Ok(s) => match s.set_max.get(&param) {
                    Some(max) => Ok(format!("accepted, up to {max}")),
                    None => Err("napi-set does not take it".into()),
                },
                Err(e) => Err(crate::error::chain(e)),
            },
            fallback,
        ));
    }
    out.push(probe(
        "napi:napi_poll tracepoint",
        napi_poll_tracepoint(),
        "no per-poll statistics; the daemon uses /proc/softirqs and XDP counters",
    ));
    out
}

/// Probes of one interface.
pub fn iface(name: &str) -> Result<Vec<Probe>, kernel::KernelError> {
    let ifindex = kernel::ifindex(name)?;
    let mut out = Vec::new();
    let features = napi::xdp_features(ifindex);
    let flag = |bit: u64, what: &str| match &features {
        Ok(f) if f & bit != 0 => Ok(format!("the driver reports {what}")),
        Ok(f) => Err(format!(
            "the driver does not report {what} (xdp-features {f:#x})"
        )),
        Err(e) => Err(crate::error::chain(e)),
    };
    out.push(probe(
        "native XDP on this device",
        flag(1, "basic XDP"),
        "generic (skb) mode",
    ));
    out.push(probe(
        "XDP_REDIRECT on this device",
        flag(2, "redirect"),
        "none: xsk rules fall back to the kernel",
    ));
    out.push(probe(
        "AF_XDP zero-copy on this device",
        flag(8, "xsk-zerocopy"),
        "AF_XDP copy mode",
    ));
    let napis = napi::list(ifindex);
    out.push(probe(
        "NAPI instances",
        match &napis {
            Ok(l) if l.is_empty() => {
                Err("none (a veth has one only with native XDP or GRO on)".into())
            }
            Ok(l) => Ok(format!(
                "{} instance(s): ids {:?}",
                l.len(),
                l.iter().map(|n| n.id).collect::<Vec<_>>()
            )),
            Err(e) => Err(crate::error::chain(e)),
        },
        "device-wide sysfs settings",
    ));
    if let Ok(Some(first)) = napis.as_ref().map(|l| l.first().cloned()) {
        let result = napi::read(first.id, napi::NapiParam::DeferHardIrqs)
            .and_then(|v| napi::set(first.id, napi::NapiParam::DeferHardIrqs, v).map(|()| v))
            .map(|v| {
                format!(
                    "wrote defer-hard-irqs={v} back to NAPI {} unchanged",
                    first.id
                )
            })
            .map_err(|e| crate::error::chain(&e));
        out.push(probe(
            "napi-set on this device",
            result,
            "device-wide sysfs settings",
        ));
    }
    match coalesce::get(ifindex) {
        Ok(map) => {
            let supported: Vec<String> = map
                .iter()
                .map(|(p, v)| format!("{}={v}", p.name()))
                .collect();
            let missing: Vec<&str> = coalesce::CoalesceParam::ALL
                .iter()
                .filter(|p| !map.contains_key(p))
                .map(|p| p.name())
                .collect();
            out.push(Probe {
                feature: "NIC interrupt coalescing",
                works: !map.is_empty(),
                detail: format!(
                    "supported: {}; not supported: {}",
                    supported.join(" "),
                    missing.join(" ")
                ),
                fallback: "software interrupt coalescing (defer-hard-irqs + gro-flush-timeout)",
            });
        }
        Err(e) => out.push(probe(
            "NIC interrupt coalescing",
            Err(crate::error::chain(&e)),
            "software interrupt coalescing (defer-hard-irqs + gro-flush-timeout)",
        )),
    }
    for p in napi::DeviceParam::ALL {
        out.push(probe(
            p.name(),
            napi::device_read(name, p)
                .map(|v| format!("device-wide sysfs value {v}"))
                .map_err(|e| crate::error::chain(&e)),
            "per-NAPI settings over netlink",
        ));
    }
    Ok(out)
}

struct Scratch {
    native: Result<String, String>,
    generic: Result<String, String>,
    xsk_copy: Result<String, String>,
    xsk_zerocopy: Result<String, String>,
}

/// On a tap created in a private network namespace on a scratch thread: attaches the
/// trivial program in native, then generic mode, and binds AF_XDP sockets in copy and
/// zero-copy mode.
fn on_scratch_tap() -> Scratch {
    let run = || -> Result<Scratch, String> {
        // SAFETY: unshare on this thread only (threads do not share network namespaces).
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            ));
        }
        let _tap = Tap::create("nmprobe0")?;
        let ifindex = kernel::ifindex("nmprobe0").map_err(|e| e.to_string())?;
        let mut ebpf = load_object(false).map_err(|e| crate::error::chain(&e))?;
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROG_PASS)
            .ok_or("the object has no pass program")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| crate::error::chain(&e))?;
        let mut attempt = |mode, label: &str| match prog.attach_to_if_index(ifindex, mode) {
            Ok(id) => {
                let link = prog.take_link(id).map_err(|e| e.to_string())?;
                let fd: Result<aya::programs::links::FdLink, _> = link.try_into();
                match fd {
                    Ok(_) => Ok(format!("attached {label} to a scratch tap with a bpf_link")),
                    Err(_) => Err(format!(
                        "{label} attach worked only through netlink, not bpf_link"
                    )),
                }
            }
            Err(e) => Err(crate::error::chain(&e)),
        };
        let native = attempt(XdpMode::Driver, "native");
        let generic = attempt(XdpMode::Skb, "generic");
        let bound =
            |r: Result<(), String>| r.map(|()| "bound to queue 0 of a scratch tap".to_string());
        // Zero-copy first: after a socket on a queue closes, the kernel answers EBUSY to
        // a new bind on that queue for about a second.
        let xsk_zerocopy = bound(xsk_bind(ifindex, XDP_ZEROCOPY));
        let xsk_copy = bound(xsk_bind(ifindex, XDP_COPY));
        Ok(Scratch {
            native,
            generic,
            xsk_copy,
            xsk_zerocopy,
        })
    };
    let failed = |e: String| Scratch {
        native: Err(e.clone()),
        generic: Err(e.clone()),
        xsk_copy: Err(e.clone()),
        xsk_zerocopy: Err(e),
    };
    match thread::spawn(run).join() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => failed(e),
        Err(_) => failed("probe thread panicked".into()),
    }
}

const SOL_XDP: libc::c_int = 283;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;

/// Registers a small UMEM, sizes the rings and binds an AF_XDP socket to queue 0 of
/// `ifindex` with `mode` (`XDP_COPY` or `XDP_ZEROCOPY`): the minimum the kernel needs to
/// accept a bind. Nothing is mapped or received.
fn xsk_bind(ifindex: u32, mode: u16) -> Result<(), String> {
    const FRAMES: usize = 64;
    const FRAME: usize = 4096;
    #[repr(C)]
    struct UmemReg {
        addr: u64,
        len: u64,
        chunk_size: u32,
        headroom: u32,
        flags: u32,
        tx_metadata_len: u32,
    }
    #[repr(C)]
    struct SockaddrXdp {
        family: u16,
        flags: u16,
        ifindex: u32,
        queue_id: u32,
        shared_umem_fd: u32,
    }
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: socket(2) with constant arguments; `Fd` closes the descriptor.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket(AF_XDP)"));
    }
    let _fd = Fd(fd);
    let umem = vec![0u8; FRAMES * FRAME + FRAME];
    let base = (umem.as_ptr() as usize).next_multiple_of(FRAME);
    let reg = UmemReg {
        addr: base as u64,
        len: (FRAMES * FRAME) as u64,
        chunk_size: FRAME as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    let set = |opt, val: *const libc::c_void, len: usize, what: &str| {
        // SAFETY: `val` points to `len` readable bytes for the duration of the call.
        if unsafe { libc::setsockopt(fd, SOL_XDP, opt, val, len as libc::socklen_t) } != 0 {
            Err(err(what))
        } else {
            Ok(())
        }
    };
    let reg_ptr = (&reg as *const UmemReg).cast();
    set(
        XDP_UMEM_REG,
        reg_ptr,
        std::mem::size_of::<UmemReg>(),
        "XDP_UMEM_REG",
    )?;
    let ring = FRAMES as u32;
    let ring_ptr = (&ring as *const u32).cast();
    set(XDP_UMEM_FILL_RING, ring_ptr, 4, "XDP_UMEM_FILL_RING")?;
    set(
        XDP_UMEM_COMPLETION_RING,
        ring_ptr,
        4,
        "XDP_UMEM_COMPLETION_RING",
    )?;
    set(XDP_RX_RING, ring_ptr, 4, "XDP_RX_RING")?;
    let addr = SockaddrXdp {
        family: libc::AF_XDP as u16,
        flags: mode,
        ifindex,
        queue_id: 0,
        shared_umem_fd: 0,
    };
    let len = std::mem::size_of::<SockaddrXdp>() as libc::socklen_t;
    // SAFETY: bind with a pointer to a sockaddr_xdp of `len` bytes.
    let rc = unsafe { libc::bind(fd, (&addr as *const SockaddrXdp).cast(), len) };
    let result = if rc != 0 { Err(err("bind")) } else { Ok(()) };
    // The socket (closed by `_fd`) pins the UMEM pages while bound; it goes first.
    drop(_fd);
    drop(umem);
    result
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this struct owns.
        unsafe { libc::close(self.0) };
    }
}

/// A non-persistent tap device: it disappears when the descriptor (held, never read)
/// closes.
struct Tap(#[allow(dead_code)] std::fs::File);

impl Tap {
    fn create(name: &str) -> Result<Tap, String> {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        let path = CString::new("/dev/net/tun").expect("literal");
        // SAFETY: plain open of a device node.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "open /dev/net/tun: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: fd was just opened and is owned here.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF takes a struct ifreq (40 bytes) by pointer.
        if unsafe { libc::ioctl(fd, TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            return Err(format!("TUNSETIFF: {}", std::io::Error::last_os_error()));
        }
        Ok(Tap(file))
    }
}

fn napi_poll_tracepoint() -> Result<String, String> {
    let btf =
        fs::read("/sys/kernel/btf/vmlinux").map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
    let needle = b"btf_trace_napi_poll\0";
    if btf.windows(needle.len()).any(|w| w == needle) {
        Ok("present in the kernel's BTF (raw_tp / tp_btf attach need no tracefs)".into())
    } else {
        Err("not in the kernel's BTF".into())
    }
}
