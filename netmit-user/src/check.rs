//! `netmit check`: what this kernel and NIC support, found by trying rather than by
//! reading version numbers, and the fallback netmit uses where something is missing.
//!
//! Intrusive probes never touch a real interface: XDP attach modes are tried on a
//! throwaway tap device inside a private network namespace that vanishes with the probe
//! thread. Per-interface probes only read (XDP feature flags, NAPI and coalescing
//! replies) or write a value back unchanged (napi-set).

use std::fs;

use aya::programs::{Xdp, XdpMode};
use serde::Serialize;

use crate::{
    classify::{Classifier, Program},
    ebpf::{PinRoot, load_object, pins::BPFFS_MOUNT},
    host::Host,
    sys::{IfName, Netdev, coalesce, napi, netns, tap::Tap},
    xsk::{BindMode, XskConfig, XskSocket},
};
use netmit_common::names;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// What was probed.
    pub feature: &'static str,
    /// Whether it works (false also when the probe could not tell: see `known`).
    pub works: bool,
    /// Whether the probe could tell: false when the source of the answer is itself
    /// missing (the netdev netlink family before Linux 6.3 holds the XDP feature flags,
    /// napi-get before 6.8 the NAPI list), so `works: false` does not mean "missing".
    pub known: bool,
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
            known: true,
            detail,
            fallback,
        },
        Err(detail) => Probe {
            feature,
            works: false,
            known: true,
            detail,
            fallback,
        },
    }
}

/// A probe whose answer this kernel cannot give (`detail` says why).
fn unknown(feature: &'static str, detail: String, fallback: &'static str) -> Probe {
    Probe {
        feature,
        works: false,
        known: false,
        detail,
        fallback,
    }
}

/// Whether `e` says the kernel lacks the netlink family or operation a probe reads.
fn source_missing(e: &napi::NapiError) -> bool {
    matches!(e, napi::NapiError::NotSupported { .. })
}

/// Probes of the kernel as a whole (NAPI netlink as `host` sees it).
pub fn system(host: &dyn Host) -> Vec<Probe> {
    let mut out = Vec::new();
    out.push(probe(
        "bpffs at /sys/fs/bpf",
        bpffs(),
        "none: netmit's pins need it (mount -t bpf bpf /sys/fs/bpf -o mode=0700)",
    ));
    out.push(probe(
        "BPF program load and BPF_PROG_TEST_RUN",
        Classifier::new(Program::Pass, &[])
            .and_then(|c| c.time(&[0u8; 64], 1))
            .map(|d| format!("an XDP_PASS run took {} ns", d.as_nanos()))
            .map_err(|e| crate::error::chain(&e)),
        "none: classify and the benchmarks need it",
    ));
    let scratch_probes = [
        (
            "XDP native (driver) mode, via bpf_link",
            "attach --mode auto uses generic mode",
        ),
        (
            "XDP generic (skb) mode, via bpf_link",
            "none: netmit needs XDP",
        ),
        (
            "AF_XDP socket bound in copy mode",
            "none for AF_XDP steering; xsk rules fall back to the kernel stack",
        ),
        (
            "AF_XDP socket bound in zero-copy mode (scratch tap)",
            "copy mode (zero-copy needs driver support; see the per-device probe)",
        ),
    ];
    match on_scratch_tap() {
        Ok(s) => {
            let results = [s.native, s.generic, s.xsk_copy, s.xsk_zerocopy];
            for ((feature, fallback), result) in scratch_probes.into_iter().zip(results) {
                out.push(probe(feature, result, fallback));
            }
        }
        // No scratch device to try them on (a container without CAP_SYS_ADMIN or
        // /dev/net/tun): the kernel was not asked, so "no" would be a wrong answer.
        Err(why) => {
            for (feature, fallback) in scratch_probes {
                out.push(unknown(
                    feature,
                    format!("not probed: {why}; `netmit check IFACE` probes an interface"),
                    fallback,
                ));
            }
        }
    }
    let support = host.napi_support();
    out.push(probe(
        "netdev netlink napi-get",
        match &support {
            Ok(s) if s.forced_fallback => Err("switched off (sysfs only)".into()),
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

/// Whether bpffs is there, and if not, the likely reason: `ip netns exec` mounts a fresh
/// sysfs over /sys for the namespace, which hides the bpffs mounted below it.
fn bpffs() -> Result<String, String> {
    if PinRoot::default().on_bpffs() {
        return Ok("mounted".into());
    }
    let in_other_netns = netns::NetnsId::current().is_ok_and(|n| !n.is_initial());
    let sysfs_remounted = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .filter(|l| l.split_whitespace().nth(4) == Some("/sys"))
            .count()
            > 1
            || in_other_netns
    });
    if in_other_netns && sysfs_remounted {
        Err(format!(
            "not visible here: this runs in another network namespace whose /sys was \
             remounted (as `ip netns exec` does), which hides {BPFFS_MOUNT}; run netmit with \
             `nsenter --net=/run/netns/NAME netmit ...` instead"
        ))
    } else {
        Err(format!(
            "not mounted: mount it with `mount -t bpf bpf {BPFFS_MOUNT} -o mode=0700`"
        ))
    }
}

/// Probes of one interface.
pub fn iface(dev: &Netdev) -> Vec<Probe> {
    let mut out = Vec::new();
    let features = napi::xdp_features(dev);
    let flag = |feature: &'static str, bit: u64, what: &str, fallback: &'static str| {
        let result = match &features {
            Ok(f) if f & bit != 0 => Ok(format!("the driver reports {what}")),
            Ok(f) => Err(format!(
                "the driver does not report {what} (xdp-features {f:#x})"
            )),
            Err(e) if source_missing(e) => {
                return unknown(
                    feature,
                    format!("unknown: {}", crate::error::chain(e)),
                    fallback,
                );
            }
            Err(e) => Err(crate::error::chain(e)),
        };
        probe(feature, result, fallback)
    };
    out.push(flag(
        "native XDP on this device",
        1,
        "basic XDP",
        "generic (skb) mode",
    ));
    out.push(flag(
        "XDP_REDIRECT on this device",
        2,
        "redirect",
        "none: xsk rules fall back to the kernel",
    ));
    out.push(flag(
        "AF_XDP zero-copy on this device",
        8,
        "xsk-zerocopy",
        "AF_XDP copy mode",
    ));
    let napis = napi::list(dev);
    out.push(match &napis {
        Err(e) if source_missing(e) => unknown(
            "NAPI instances",
            format!("unknown: {}", crate::error::chain(e)),
            "device-wide sysfs settings",
        ),
        _ => probe(
            "NAPI instances",
            match &napis {
                Ok(l) if l.is_empty() => {
                    Err("none (a veth has one only with native XDP or GRO on)".into())
                }
                Ok(l) => Ok(format!(
                    "{} instance(s): ids {}",
                    l.len(),
                    l.iter()
                        .map(|n| n.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(e) => Err(crate::error::chain(e)),
            },
            "device-wide sysfs settings",
        ),
    });
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
    match coalesce::get(dev) {
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
                known: true,
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
            napi::device_read(dev, p)
                .map(|v| format!("device-wide sysfs value {v}"))
                .map_err(|e| crate::error::chain(&e)),
            "per-NAPI settings over netlink",
        ));
    }
    out
}

struct Scratch {
    native: Result<String, String>,
    generic: Result<String, String>,
    xsk_copy: Result<String, String>,
    xsk_zerocopy: Result<String, String>,
}

impl Scratch {
    /// Every probe failed with `e`.
    fn failed(e: String) -> Scratch {
        Scratch {
            native: Err(e.clone()),
            generic: Err(e.clone()),
            xsk_copy: Err(e.clone()),
            xsk_zerocopy: Err(e),
        }
    }
}

/// On a tap created in a private network namespace on a scratch thread: attaches the
/// trivial program in native, then generic mode, and binds AF_XDP sockets in copy and
/// zero-copy mode. Fails when there is no scratch tap to try them on.
fn on_scratch_tap() -> Result<Scratch, String> {
    let run = || -> Result<Scratch, String> {
        let name = IfName::new("nmprobe0").expect("valid name");
        let _tap = Tap::create(&name).map_err(|e| format!("creating a tap device: {e}"))?;
        let dev = Netdev::resolve(&name).map_err(|e| e.to_string())?;
        // The device is there; a program that does not load is a "no" for each.
        let mut ebpf = match load_object(false, crate::ebpf::LogLevel::Off) {
            Ok(ebpf) => ebpf,
            Err(e) => return Ok(Scratch::failed(crate::error::chain(&e))),
        };
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROG_PASS)
            .ok_or("the object has no pass program")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        if let Err(e) = prog.load() {
            return Ok(Scratch::failed(crate::error::chain(&e)));
        }
        let mut attempt = |mode, label: &str| match prog.attach_to_if_index(dev.ifindex, mode) {
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
        // The smallest UMEM and rings the kernel takes: a bind is all that is tried.
        let bind = |mode| {
            let cfg = XskConfig {
                frame_count: 64,
                rx_ring: 64,
                tx_ring: 64,
                fill_ring: 64,
                completion_ring: 64,
                mode,
                ..XskConfig::default()
            };
            XskSocket::open(&dev, 0, &cfg)
                .map(|_| "bound to queue 0 of a scratch tap".to_string())
                .map_err(|e| crate::error::chain(&e))
        };
        // Zero-copy first: after a socket on a queue closes, the kernel answers EBUSY to
        // a new bind on that queue for a while.
        let xsk_zerocopy = bind(BindMode::ZeroCopy);
        let xsk_copy = bind(BindMode::Copy);
        Ok(Scratch {
            native,
            generic,
            xsk_copy,
            xsk_zerocopy,
        })
    };
    match netns::in_new_netns(run) {
        Ok(result) => result,
        Err(e) => Err(crate::error::chain(&e)),
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
