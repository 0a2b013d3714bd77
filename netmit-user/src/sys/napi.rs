//! NAPI interrupt mitigation: per-NAPI settings over the netdev generic-netlink family,
//! the device-wide sysfs defaults, and discovery (NAPI instances, their queues, IRQ lines).
//!
//! # Why netlink first, sysfs second
//!
//! A NAPI instance is the kernel's polling context for one (or a few) device queues; the
//! knobs that decide how often its interrupt fires live on it:
//!
//! | knob | per-NAPI (`napi-set`) | device-wide sysfs file |
//! |---|---|---|
//! | defer-hard-irqs | Linux 6.13 | `napi_defer_hard_irqs` (5.7) |
//! | gro-flush-timeout | Linux 6.13 | `gro_flush_timeout` (3.19) |
//! | irq-suspend-timeout | Linux 6.13 | none |
//! | threaded | Linux 6.17 (busy-poll mode 2: 6.19) | `threaded` (5.12) |
//!
//! The sysfs files (`/sys/class/net/IFACE/…`) set one default for the whole device: a
//! write copies the value into every NAPI of the device and into the device's own field,
//! and a read returns only the device's field. Per-NAPI values set through netlink are
//! therefore *not* visible in sysfs (measured on 6.18, see the integration tests), and a
//! later sysfs write overwrites every per-NAPI value. Netlink is also the only way to
//! address one queue's NAPI, the only place irq-suspend-timeout exists, and it reports
//! each NAPI's IRQ, kthread pid and queues. So netmit uses `napi-get`/`napi-set` when the
//! kernel has them ([`napi_netlink_supported`]) and falls back to the sysfs defaults
//! ([`device_read`], [`device_write`]) when it does not.
//!
//! Requests go through `netlink-bindings`' netdev family (generated from the kernel's YNL
//! spec `netdev.yaml`) with two local corrections, kept in this file: the generator types
//! the spec's variable-width `uint` attributes (gro-flush-timeout, irq-suspend-timeout) as
//! `u32`, which truncates a kernel reply of 8 bytes (timeouts of 2^32 ns, about 4.3 s, and
//! more) and cannot send one; so replies are parsed from the raw attributes and large
//! values are sent as 8-byte attributes. And netlink-socket2 0.3.5 misparses a dump that
//! ends with an error (it reads an `NLMSG_DONE` error as too short), so dumps filtered by
//! ifindex first check that the interface exists.
//!
//! # What a veth needs
//!
//! A veth has a NAPI instance only while native (driver-mode) XDP is attached or GRO is on
//! (`ethtool -K DEV gro on`); it has none otherwise, and writing the sysfs `threaded` file
//! then fails with EIO ([`NapiError::NoNapi`]). Its NAPI has no `irq` attribute, and the
//! veth driver does not link its queues to the NAPI, so queue-get lists rx queue 0 without
//! a `napi-id` and [`NapiInfo::rx_queues`] stays empty (6.18). NAPI ids change when a NAPI
//! is re-created; the kernel carries the settings over.
//!
//! # Namespaces
//!
//! Netlink requests act on the network namespace of the calling *thread*. sysfs does not:
//! `/sys/class/net` lists the devices of the namespace that mounted sysfs. The `device_*`
//! functions therefore check that the interface's sysfs `ifindex` matches the one the
//! calling thread's namespace reports and refuse otherwise
//! ([`NapiError::SysfsOtherNamespace`]) instead of touching a same-named device elsewhere.
//! (An interface with the same name *and* index in both namespaces, such as `lo`, cannot
//! be told apart this way.)

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CString,
    fmt, fs,
    io::{self, Write},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{
        OnceLock,
        atomic::{AtomicU8, Ordering},
    },
};

use netlink_bindings::{netdev, nlctrl, traits::Pusher, utils};
use netlink_socket2::{NetlinkSocket, ReplyError};

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// Per-NAPI parameters settable with napi-set.
///
/// Values are `u64`: a count for [`NapiParam::DeferHardIrqs`], nanoseconds for the two
/// timeouts, a mode (0 off, 1 threaded, 2 threaded busy-poll) for [`NapiParam::Threaded`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NapiParam {
    /// Empty polls before hardware IRQs are re-enabled (`defer-hard-irqs`).
    DeferHardIrqs,
    /// Watchdog timeout that re-polls while IRQs are deferred (`gro-flush-timeout`, ns).
    GroFlushTimeout,
    /// IRQ suspension timeout while busy polling finds events (`irq-suspend-timeout`, ns).
    IrqSuspendTimeout,
    /// Threaded NAPI polling mode (`threaded`).
    Threaded,
}

impl NapiParam {
    /// Every parameter, in netlink attribute order.
    pub const ALL: [NapiParam; 4] = [
        NapiParam::DeferHardIrqs,
        NapiParam::GroFlushTimeout,
        NapiParam::IrqSuspendTimeout,
        NapiParam::Threaded,
    ];

    /// The netlink attribute name (`defer-hard-irqs`, …), also the serde name.
    pub fn name(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => "defer-hard-irqs",
            NapiParam::GroFlushTimeout => "gro-flush-timeout",
            NapiParam::IrqSuspendTimeout => "irq-suspend-timeout",
            NapiParam::Threaded => "threaded",
        }
    }

    /// The parameter called `name` (as [`NapiParam::name`] spells it).
    pub fn from_name(name: &str) -> Option<NapiParam> {
        NapiParam::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Largest value the netdev spec allows (the range is always `0..=max`).
    ///
    /// defer-hard-irqs is a `u32` capped at `S32_MAX`; the timeouts are unbounded `uint`
    /// nanoseconds; threaded is the `napi-threaded` enum, whose newest entry `busy-poll`
    /// (2) exists from Linux 6.19: 6.18's own policy stops at 1 and the kernel answers
    /// ERANGE, reported as [`NapiError::OutOfRange`] with the kernel's bound.
    /// [`kernel_support`] reads the running kernel's bounds.
    pub fn max(self) -> u64 {
        match self {
            NapiParam::DeferHardIrqs => i32::MAX as u64,
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => u64::MAX,
            NapiParam::Threaded => 2,
        }
    }

    /// First Linux release that can set this parameter per NAPI.
    pub fn since(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs
            | NapiParam::GroFlushTimeout
            | NapiParam::IrqSuspendTimeout => "6.13",
            NapiParam::Threaded => "6.17",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => "polls",
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => "ns",
            NapiParam::Threaded => "mode",
        }
    }

    /// What the parameter does, its range and the first kernel that has it per NAPI.
    pub fn description(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => {
                "number of consecutive empty NAPI polls before hardware IRQs are re-enabled; \
                 while deferred, the gro-flush-timeout watchdog re-polls instead of the IRQ. \
                 0 (default) disables deferral. Range 0..=2147483647. Per NAPI since Linux \
                 6.13 (device-wide sysfs napi_defer_hard_irqs since 5.7)"
            }
            NapiParam::GroFlushTimeout => {
                "nanoseconds before the NAPI watchdog timer schedules a poll while IRQs are \
                 deferred; non-zero also keeps GRO from flushing super-frames at the end of a \
                 poll. 0 (default) disables it. Range 0..=2^64-1 ns. Per NAPI since Linux 6.13 \
                 (device-wide sysfs gro_flush_timeout since 3.19)"
            }
            NapiParam::IrqSuspendTimeout => {
                "nanoseconds IRQs stay suspended while an application busy-polls this NAPI \
                 with epoll (prefer-busy-poll) and keeps finding events; a safety net that \
                 should exceed the application's processing time. 0 (default) disables IRQ \
                 suspension. Range 0..=2^64-1 ns. Per NAPI only, since Linux 6.13"
            }
            NapiParam::Threaded => {
                "polling mode: 0 softirq (default), 1 a kthread napi/<dev>-<id> polls, 2 that \
                 kthread busy-polls (Linux 6.19+; 6.18 accepts 0..=1). Per NAPI since Linux \
                 6.17 (device-wide sysfs threaded since 5.12)"
            }
        }
    }

    /// Checks `value` against [`NapiParam::max`].
    pub fn validate(self, value: u64) -> Result<(), NapiError> {
        if value > self.max() {
            return Err(NapiError::OutOfRange {
                param: self.name(),
                value,
                max: self.max(),
            });
        }
        Ok(())
    }

    /// The device-wide sysfs default that sets this parameter on every NAPI, if any.
    pub fn device_param(self) -> Option<DeviceParam> {
        match self {
            NapiParam::DeferHardIrqs => Some(DeviceParam::DeferHardIrqs),
            NapiParam::GroFlushTimeout => Some(DeviceParam::GroFlushTimeout),
            NapiParam::IrqSuspendTimeout => None,
            NapiParam::Threaded => Some(DeviceParam::Threaded),
        }
    }

    /// `NETDEV_A_NAPI_*` attribute type.
    fn attr(self) -> u16 {
        match self {
            NapiParam::DeferHardIrqs => ATTR_DEFER_HARD_IRQS,
            NapiParam::GroFlushTimeout => ATTR_GRO_FLUSH_TIMEOUT,
            NapiParam::IrqSuspendTimeout => ATTR_IRQ_SUSPEND_TIMEOUT,
            NapiParam::Threaded => ATTR_THREADED,
        }
    }

    fn requirement(self) -> &'static str {
        match self {
            NapiParam::Threaded => "per-NAPI threaded needs Linux 6.17 or later",
            _ => "per-NAPI napi-set attributes need Linux 6.13 or later",
        }
    }
}

impl fmt::Display for NapiParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NapiParam {
    type Err = NapiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NapiParam::from_name(s).ok_or_else(|| NapiError::UnknownParam {
            name: s.to_string(),
            known: "defer-hard-irqs, gro-flush-timeout, irq-suspend-timeout, threaded",
        })
    }
}

/// Device-wide defaults in sysfs (`/sys/class/net/IFACE/{napi_defer_hard_irqs,
/// gro_flush_timeout,threaded}`): a write applies to every NAPI of the device.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceParam {
    /// `napi_defer_hard_irqs`.
    DeferHardIrqs,
    /// `gro_flush_timeout` (ns).
    GroFlushTimeout,
    /// `threaded` (0 or 1).
    Threaded,
}

impl DeviceParam {
    /// Every device-wide parameter.
    pub const ALL: [DeviceParam; 3] = [
        DeviceParam::DeferHardIrqs,
        DeviceParam::GroFlushTimeout,
        DeviceParam::Threaded,
    ];

    /// Name, spelled like the per-NAPI equivalent (`defer-hard-irqs`, …).
    pub fn name(self) -> &'static str {
        self.napi_param().name()
    }

    /// The parameter called `name` (as [`DeviceParam::name`] spells it).
    pub fn from_name(name: &str) -> Option<DeviceParam> {
        DeviceParam::ALL.into_iter().find(|p| p.name() == name)
    }

    /// File name under `/sys/class/net/IFACE/`.
    pub fn file(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => "napi_defer_hard_irqs",
            DeviceParam::GroFlushTimeout => "gro_flush_timeout",
            DeviceParam::Threaded => "threaded",
        }
    }

    /// Largest value the kernel accepts: `S32_MAX` for napi_defer_hard_irqs (ERANGE
    /// above), an `unsigned long` of nanoseconds for gro_flush_timeout, 1 for threaded
    /// (the sysfs file takes 0 or 1 on 6.18; busy-poll mode goes through napi-set).
    pub fn max(self) -> u64 {
        match self {
            DeviceParam::DeferHardIrqs => i32::MAX as u64,
            DeviceParam::GroFlushTimeout => u64::MAX,
            DeviceParam::Threaded => 1,
        }
    }

    /// First Linux release with the sysfs file.
    pub fn since(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => "5.7",
            DeviceParam::GroFlushTimeout => "3.19",
            DeviceParam::Threaded => "5.12",
        }
    }

    /// What the file does, its range and the first kernel that has it.
    pub fn description(self) -> &'static str {
        match self {
            DeviceParam::DeferHardIrqs => {
                "device-wide default of defer-hard-irqs: empty polls before hardware IRQs are \
                 re-enabled (0 disables deferral); a write sets every NAPI of the device. \
                 Range 0..=2147483647. sysfs napi_defer_hard_irqs, Linux 5.7+"
            }
            DeviceParam::GroFlushTimeout => {
                "device-wide default of gro-flush-timeout in ns (0 disables the watchdog); a \
                 write sets every NAPI of the device. Range 0..=2^64-1. sysfs \
                 gro_flush_timeout, Linux 3.19+"
            }
            DeviceParam::Threaded => {
                "device-wide threaded NAPI: 1 moves every NAPI of the device to its own \
                 kthread, 0 back to softirq; EIO when the device has no NAPI. sysfs threaded, \
                 Linux 5.12+"
            }
        }
    }

    /// Checks `value` against [`DeviceParam::max`].
    pub fn validate(self, value: u64) -> Result<(), NapiError> {
        if value > self.max() {
            return Err(NapiError::OutOfRange {
                param: self.name(),
                value,
                max: self.max(),
            });
        }
        Ok(())
    }

    /// The per-NAPI parameter this default applies to.
    pub fn napi_param(self) -> NapiParam {
        match self {
            DeviceParam::DeferHardIrqs => NapiParam::DeferHardIrqs,
            DeviceParam::GroFlushTimeout => NapiParam::GroFlushTimeout,
            DeviceParam::Threaded => NapiParam::Threaded,
        }
    }
}

impl fmt::Display for DeviceParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceParam {
    type Err = NapiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceParam::from_name(s).ok_or_else(|| NapiError::UnknownParam {
            name: s.to_string(),
            known: "defer-hard-irqs, gro-flush-timeout, threaded",
        })
    }
}

// ---------------------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------------------

/// One NAPI instance as napi-get reports it, with the queues queue-get links to it.
/// Attributes the kernel does not report are `None` (e.g. `irq` on a veth, `pid` when not
/// threaded, the settings on kernels before 6.13).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NapiInfo {
    /// NAPI id (changes when the NAPI is re-created).
    pub id: u32,
    /// Interface index of the device.
    pub ifindex: u32,
    /// IRQ line, when the driver registered one.
    pub irq: Option<u32>,
    /// Pid of the `napi/<dev>-<id>` kthread when threaded.
    pub pid: Option<u32>,
    /// defer-hard-irqs.
    pub defer_hard_irqs: Option<u32>,
    /// gro-flush-timeout in nanoseconds.
    pub gro_flush_timeout_ns: Option<u64>,
    /// irq-suspend-timeout in nanoseconds.
    pub irq_suspend_timeout_ns: Option<u64>,
    /// threaded mode (0, 1, 2).
    pub threaded: Option<u32>,
    /// Receive queues this NAPI services, as queue-get links them (empty when the driver
    /// does not link queues to NAPIs, as veth on 6.18).
    pub rx_queues: Vec<u32>,
    /// Transmit queues this NAPI services.
    pub tx_queues: Vec<u32>,
}

impl NapiInfo {
    /// The reported value of `param`, if the kernel reported it.
    pub fn value(&self, param: NapiParam) -> Option<u64> {
        match param {
            NapiParam::DeferHardIrqs => self.defer_hard_irqs.map(u64::from),
            NapiParam::GroFlushTimeout => self.gro_flush_timeout_ns,
            NapiParam::IrqSuspendTimeout => self.irq_suspend_timeout_ns,
            NapiParam::Threaded => self.threaded.map(u64::from),
        }
    }
}

/// Direction of a device queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// Receive queue.
    Rx,
    /// Transmit queue.
    Tx,
}

/// One device queue as queue-get reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Direction.
    pub kind: QueueKind,
    /// Queue index within its direction.
    pub id: u32,
    /// The NAPI servicing it, when the driver links them (`netif_queue_set_napi`); veth
    /// does not, so its queues carry none even while its NAPI exists.
    pub napi_id: Option<u32>,
}

/// What the running kernel offers, from the generic-netlink controller (the netdev
/// family's operations and napi-set's attribute policy): the authoritative answer to
/// "which per-NAPI knobs exist here, and up to what value".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelSupport {
    /// The netdev family exists (Linux 6.3+).
    pub netdev_family: bool,
    /// napi-get exists (Linux 6.8+).
    pub napi_get: bool,
    /// napi-set exists (Linux 6.13+).
    pub napi_set: bool,
    /// queue-get exists (Linux 6.8+).
    pub queue_get: bool,
    /// Largest value napi-set accepts per parameter, from the kernel's own policy; a
    /// parameter is missing when napi-set does not take it (or the policy was unreadable).
    pub set_max: BTreeMap<NapiParam, u64>,
    /// Netlink use is switched off by the test hook ([`force_sysfs_fallback`]).
    pub forced_fallback: bool,
}

/// One numbered row of `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IrqLine {
    /// IRQ number.
    pub irq: u32,
    /// Everything after the counts (chip, hardware IRQ and trigger, action names), with
    /// runs of blanks collapsed, e.g. `PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0`.
    pub name: String,
    /// Count per CPU, indexed by CPU number; CPUs missing from the header (offline) and
    /// columns missing from a short row count 0.
    pub per_cpu: Vec<u64>,
}

impl IrqLine {
    /// Sum over all CPUs.
    pub fn total(&self) -> u64 {
        self.per_cpu.iter().sum()
    }
}

/// Errors reading or changing NAPI settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NapiError {
    /// No NAPI instance with this id in the calling thread's network namespace.
    #[error(
        "NAPI {id} does not exist in this network namespace (ids change when a NAPI is \
         re-created; list them with `netmit tune show IFACE`)"
    )]
    NoSuchNapi {
        /// The id asked for.
        id: u32,
    },
    /// No interface of this name in the calling thread's network namespace.
    #[error("interface `{iface}` does not exist in this network namespace (see `ip link`)")]
    NoSuchInterface {
        /// Interface name.
        iface: String,
    },
    /// No interface with this index in the calling thread's network namespace.
    #[error("no interface with index {ifindex} in this network namespace (see `ip link`)")]
    NoSuchIfindex {
        /// Interface index.
        ifindex: u32,
    },
    /// The device has no NAPI instance.
    #[error(
        "`{iface}` has no NAPI instance: a veth has one only with native XDP attached or GRO \
         on (`ethtool -K {iface} gro on`); other virtual devices may have none"
    )]
    NoNapi {
        /// Interface name.
        iface: String,
    },
    /// The kernel lacks the operation or attribute (or the test hook switched netlink off).
    #[error("{what} is not supported here: {hint}")]
    NotSupported {
        /// What is missing.
        what: String,
        /// Which kernel has it, or what to do instead.
        hint: &'static str,
    },
    /// A value outside the parameter's range; nothing was changed.
    #[error("{value} is out of range for {param} (0..={max})")]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// The value given.
        value: u64,
        /// Largest valid value (the kernel's own bound when the kernel rejected it).
        max: u64,
    },
    /// A parameter name that does not exist.
    #[error("unknown parameter `{name}` (known: {known})")]
    UnknownParam {
        /// The name given.
        name: String,
        /// The valid names.
        known: &'static str,
    },
    /// The kernel refused for lack of privilege.
    #[error("{what} needs CAP_NET_ADMIN: run as root")]
    PermissionDenied {
        /// The refused operation.
        what: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink {what} failed{}", extack_suffix(.extack))]
    Netlink {
        /// The request.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, if it sent one.
        extack: Option<String>,
    },
    /// A reply lacked a mandatory attribute or carried a malformed one.
    #[error("netlink {what}: reply lacks a valid `{attr}` attribute")]
    BadReply {
        /// The request.
        what: &'static str,
        /// Attribute name.
        attr: &'static str,
    },
    /// Reading or writing a sysfs file failed.
    #[error("{} {}", sysfs_action(*.value), .path.display())]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The value being written (None for a read).
        value: Option<u64>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A sysfs file did not hold a number.
    #[error("{} holds {text:?}, not a number", .path.display())]
    SysfsParse {
        /// The file.
        path: PathBuf,
        /// Its content.
        text: String,
    },
    /// The interface exists here, but /sys/class/net belongs to another namespace.
    #[error(
        "`{iface}` exists in this network namespace, but /sys/class/net shows another one's \
         devices (sysfs lists the namespace that mounted it): mount sysfs inside this \
         namespace first, as `ip netns exec` does"
    )]
    SysfsOtherNamespace {
        /// Interface name.
        iface: String,
    },
    /// Reading a /proc file failed.
    #[error("reading {}", .path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// /proc/interrupts had an unexpected shape.
    #[error("{} line {line}: {reason}", .path.display())]
    ProcParse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The IRQ is not in /proc/interrupts.
    #[error("IRQ {irq} is not listed in /proc/interrupts")]
    NoSuchIrq {
        /// IRQ number.
        irq: u32,
    },
}

fn extack_suffix(extack: &Option<String>) -> String {
    match extack {
        Some(m) if !m.is_empty() => format!(" (kernel: {m})"),
        _ => String::new(),
    }
}

fn sysfs_action(value: Option<u64>) -> String {
    match value {
        Some(v) => format!("writing {v} to"),
        None => "reading".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Test hook: pretend the kernel has no NAPI netlink
// ---------------------------------------------------------------------------------------

/// Environment variable that, set to `1` when first consulted, makes this process behave
/// as on a kernel without napi-get/napi-set (test hook, see [`force_sysfs_fallback`]).
pub const FORCE_NO_NAPI_NETLINK_ENV: &str = "NETMIT_FORCE_NO_NAPI_NETLINK";

const FORCE_UNSET: u8 = 0;
const FORCE_ON: u8 = 1;
const FORCE_OFF: u8 = 2;
static FORCE: AtomicU8 = AtomicU8::new(FORCE_UNSET);
static FORCE_FROM_ENV: OnceLock<bool> = OnceLock::new();

/// Test hook: makes the whole process behave as on a kernel without NAPI netlink.
///
/// While on, [`napi_netlink_supported`] is false and every netlink function ([`list`],
/// [`list_all`], [`get`], [`set`], [`read`], [`queues`]) returns
/// [`NapiError::NotSupported`] without sending anything, so the sysfs fallback path can be
/// exercised on a kernel that has netlink. It overrides [`FORCE_NO_NAPI_NETLINK_ENV`]
/// (read once, on first use). Process-wide: tests in one binary that use it must not run
/// concurrently with tests that need netlink.
pub fn force_sysfs_fallback(on: bool) {
    FORCE.store(if on { FORCE_ON } else { FORCE_OFF }, Ordering::SeqCst);
}

/// Whether the [`force_sysfs_fallback`] hook (or its environment variable) is on.
pub fn sysfs_fallback_forced() -> bool {
    match FORCE.load(Ordering::SeqCst) {
        FORCE_ON => true,
        FORCE_OFF => false,
        _ => *FORCE_FROM_ENV
            .get_or_init(|| std::env::var_os(FORCE_NO_NAPI_NETLINK_ENV).is_some_and(|v| v == "1")),
    }
}

fn check_not_forced(what: &str) -> Result<(), NapiError> {
    if sysfs_fallback_forced() {
        return Err(NapiError::NotSupported {
            what: format!("netdev netlink {what}"),
            hint: "switched off by the test hook (force_sysfs_fallback or \
                   NETMIT_FORCE_NO_NAPI_NETLINK=1)",
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Netlink
// ---------------------------------------------------------------------------------------

// NETDEV_A_NAPI_* (include/uapi/linux/netdev.h).
const ATTR_IFINDEX: u16 = 1;
const ATTR_ID: u16 = 2;
const ATTR_IRQ: u16 = 3;
const ATTR_PID: u16 = 4;
const ATTR_DEFER_HARD_IRQS: u16 = 5;
const ATTR_GRO_FLUSH_TIMEOUT: u16 = 6;
const ATTR_IRQ_SUSPEND_TIMEOUT: u16 = 7;
const ATTR_THREADED: u16 = 8;

// NETDEV_CMD_* (include/uapi/linux/netdev.h).
const CMD_QUEUE_GET: u32 = 10;
const CMD_NAPI_GET: u32 = 11;
const CMD_NAPI_SET: u32 = 14;

// CTRL_ATTR_* of the generic-netlink controller (include/uapi/linux/genetlink.h).
const CTRL_ATTR_POLICY: u16 = 8;
const CTRL_ATTR_OP_POLICY: u16 = 10;

const FAMILY_HINT: &str = "the netdev netlink family needs Linux 6.3+ (napi-get 6.8, \
                           napi-set 6.13); use the device-wide sysfs files instead";
const OP_HINT: &str = "napi-get and queue-get need Linux 6.8+, napi-set 6.13+; use the device-wide \
                       sysfs files instead";

/// An error from `NetlinkSocket::request` (socket, send, or family lookup).
fn request_error(what: &'static str, source: io::Error) -> NapiError {
    match source.raw_os_error() {
        // The controller answers ENOENT for an unknown family.
        Some(libc::ENOENT) => NapiError::NotSupported {
            what: "the netdev generic-netlink family".to_string(),
            hint: FAMILY_HINT,
        },
        Some(libc::EPERM | libc::EACCES) => NapiError::PermissionDenied { what },
        _ => NapiError::Netlink {
            what,
            source,
            extack: None,
        },
    }
}

/// An error the kernel answered, classified with what the caller sent.
fn reply_error(
    what: &'static str,
    err: ReplyError,
    napi_id: Option<u32>,
    param: Option<(NapiParam, u64)>,
) -> NapiError {
    let (extack, policy_max) = match err.ext_ack() {
        Some(ack) => (
            ack.get_msg().ok().map(|m| m.to_string_lossy().into_owned()),
            ack.get_policy().ok().and_then(|p| p.get_max_value_u().ok()),
        ),
        None => (None, None),
    };
    let source: io::Error = err.into();
    classify(what, source, extack, policy_max, napi_id, param)
}

fn classify(
    what: &'static str,
    source: io::Error,
    extack: Option<String>,
    policy_max: Option<u64>,
    napi_id: Option<u32>,
    param: Option<(NapiParam, u64)>,
) -> NapiError {
    match (source.raw_os_error(), napi_id, param) {
        (Some(libc::ENOENT), Some(id), _) => NapiError::NoSuchNapi { id },
        // Unknown generic-netlink command.
        (Some(libc::EOPNOTSUPP), _, _) => NapiError::NotSupported {
            what: format!("netlink {what}"),
            hint: OP_HINT,
        },
        // Attribute beyond the operation's policy (strict validation).
        (Some(libc::EINVAL), _, Some((p, _)))
            if extack
                .as_deref()
                .is_some_and(|m| m.contains("Unknown attribute")) =>
        {
            NapiError::NotSupported {
                what: format!("napi-set attribute {}", p.name()),
                hint: p.requirement(),
            }
        }
        (Some(libc::ERANGE | libc::EINVAL), _, Some((p, value))) if policy_max.is_some() => {
            NapiError::OutOfRange {
                param: p.name(),
                value,
                max: policy_max.unwrap_or(p.max()),
            }
        }
        (Some(libc::EPERM | libc::EACCES), _, _) => NapiError::PermissionDenied { what },
        _ => NapiError::Netlink {
            what,
            source,
            extack,
        },
    }
}

fn parse_u32_attr(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

/// A netlink `uint` (NLA_UINT): 4 or 8 bytes, as `nla_put_uint` chooses.
fn parse_uint_attr(b: &[u8]) -> Option<u64> {
    match b.len() {
        4 => parse_u32_attr(b).map(u64::from),
        8 => Some(u64::from_ne_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// Parses the attributes of one napi-get reply.
fn parse_napi(what: &'static str, buf: &[u8]) -> Result<NapiInfo, NapiError> {
    let bad = |attr| NapiError::BadReply { what, attr };
    let (mut id, mut ifindex) = (None, None);
    let mut info = NapiInfo {
        id: 0,
        ifindex: 0,
        irq: None,
        pid: None,
        defer_hard_irqs: None,
        gro_flush_timeout_ns: None,
        irq_suspend_timeout_ns: None,
        threaded: None,
        rx_queues: Vec::new(),
        tx_queues: Vec::new(),
    };
    let mut pos = 0;
    while let Some((header, body)) = utils::chop_header(buf, &mut pos) {
        match header.r#type {
            ATTR_IFINDEX => ifindex = Some(parse_u32_attr(body).ok_or_else(|| bad("ifindex"))?),
            ATTR_ID => id = Some(parse_u32_attr(body).ok_or_else(|| bad("id"))?),
            ATTR_IRQ => info.irq = Some(parse_u32_attr(body).ok_or_else(|| bad("irq"))?),
            ATTR_PID => info.pid = Some(parse_u32_attr(body).ok_or_else(|| bad("pid"))?),
            ATTR_DEFER_HARD_IRQS => {
                info.defer_hard_irqs =
                    Some(parse_u32_attr(body).ok_or_else(|| bad("defer-hard-irqs"))?)
            }
            ATTR_GRO_FLUSH_TIMEOUT => {
                info.gro_flush_timeout_ns =
                    Some(parse_uint_attr(body).ok_or_else(|| bad("gro-flush-timeout"))?)
            }
            ATTR_IRQ_SUSPEND_TIMEOUT => {
                info.irq_suspend_timeout_ns =
                    Some(parse_uint_attr(body).ok_or_else(|| bad("irq-suspend-timeout"))?)
            }
            ATTR_THREADED => {
                info.threaded = Some(parse_u32_attr(body).ok_or_else(|| bad("threaded"))?)
            }
            _ => {} // newer kernels may add attributes
        }
    }
    info.id = id.ok_or_else(|| bad("id"))?;
    info.ifindex = ifindex.ok_or_else(|| bad("ifindex"))?;
    Ok(info)
}

/// Appends a netlink `uint` attribute: 4 bytes when the value fits, else 8 (the kernel's
/// `nla_get_uint` takes either; the generated `push_*` only writes 4).
fn push_uint(buf: &mut impl Pusher, attr: u16, value: u64) {
    let vec = buf.as_vec_mut();
    match u32::try_from(value) {
        Ok(v) => {
            utils::push_header(vec, attr, 4);
            vec.extend(v.to_ne_bytes());
        }
        Err(_) => {
            utils::push_header(vec, attr, 8);
            vec.extend(value.to_ne_bytes());
        }
    }
}

fn napi_dump(sock: &mut NetlinkSocket, ifindex: Option<u32>) -> Result<Vec<NapiInfo>, NapiError> {
    const WHAT: &str = "napi-get dump";
    let mut req = netdev::Request::new().op_napi_get_dump();
    if let Some(i) = ifindex {
        req.encode().push_ifindex(i);
    }
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let mut out = Vec::new();
    while let Some(msg) = reply.recv() {
        let attrs = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        out.push(parse_napi(WHAT, attrs.get_buf())?);
    }
    Ok(out)
}

fn queue_dump(sock: &mut NetlinkSocket, ifindex: Option<u32>) -> Result<Vec<QueueInfo>, NapiError> {
    const WHAT: &str = "queue-get dump";
    let mut req = netdev::Request::new().op_queue_get_dump();
    if let Some(i) = ifindex {
        req.encode().push_ifindex(i);
    }
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let mut out = Vec::new();
    while let Some(msg) = reply.recv() {
        let q = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        let bad = |attr| NapiError::BadReply { what: WHAT, attr };
        let kind = match q
            .get_type()
            .map(|t| netdev::QueueType::from_value(t.into()))
        {
            Ok(Some(netdev::QueueType::Rx)) => QueueKind::Rx,
            Ok(Some(netdev::QueueType::Tx)) => QueueKind::Tx,
            Ok(None) => continue, // a queue type newer than this code
            Err(_) => return Err(bad("type")),
        };
        out.push(QueueInfo {
            ifindex: q.get_ifindex().map_err(|_| bad("ifindex"))?,
            kind,
            id: q.get_id().map_err(|_| bad("id"))?,
            // Absent when no NAPI services the queue, or the driver does not say (veth).
            napi_id: q.get_napi_id().ok(),
        });
    }
    Ok(out)
}

fn fill_queues(infos: &mut [NapiInfo], queues: &[QueueInfo]) {
    for info in infos.iter_mut() {
        for q in queues.iter().filter(|q| q.napi_id == Some(info.id)) {
            match q.kind {
                QueueKind::Rx => info.rx_queues.push(q.id),
                QueueKind::Tx => info.tx_queues.push(q.id),
            }
        }
        info.rx_queues.sort_unstable();
        info.tx_queues.sort_unstable();
    }
}

/// The configured queues of one interface (queue-get dump), with the NAPI servicing each
/// where the driver links them. Acts in the calling thread's network namespace.
pub fn queues(ifindex: u32) -> Result<Vec<QueueInfo>, NapiError> {
    check_not_forced("queue-get")?;
    if_indextoname(ifindex).ok_or(NapiError::NoSuchIfindex { ifindex })?;
    queue_dump(&mut NetlinkSocket::new(), Some(ifindex))
}

/// The NAPI instances of one interface (napi-get dump filtered by ifindex), with the
/// queues queue-get links to them, sorted by id. Empty when the device has none (a veth
/// without native XDP or GRO). Acts in the calling thread's network namespace.
pub fn list(ifindex: u32) -> Result<Vec<NapiInfo>, NapiError> {
    check_not_forced("napi-get")?;
    // A dump for a missing ifindex ends in an error that netlink-socket2 cannot parse.
    if_indextoname(ifindex).ok_or(NapiError::NoSuchIfindex { ifindex })?;
    let mut sock = NetlinkSocket::new();
    let mut infos = napi_dump(&mut sock, Some(ifindex))?;
    if !infos.is_empty() {
        let queues = queue_dump(&mut sock, Some(ifindex))?;
        fill_queues(&mut infos, &queues);
    }
    infos.sort_by_key(|n| n.id);
    Ok(infos)
}

/// Every NAPI instance in the calling thread's network namespace, with queues, by id.
pub fn list_all() -> Result<Vec<NapiInfo>, NapiError> {
    check_not_forced("napi-get")?;
    let mut sock = NetlinkSocket::new();
    let mut infos = napi_dump(&mut sock, None)?;
    if !infos.is_empty() {
        let queues = queue_dump(&mut sock, None)?;
        fill_queues(&mut infos, &queues);
    }
    infos.sort_by_key(|n| n.id);
    Ok(infos)
}

/// One NAPI instance (napi-get do), with its queues.
pub fn get(napi_id: u32) -> Result<NapiInfo, NapiError> {
    const WHAT: &str = "napi-get";
    check_not_forced(WHAT)?;
    let mut sock = NetlinkSocket::new();
    let mut info = {
        let mut req = netdev::Request::new().op_napi_get_do();
        req.encode().push_id(napi_id);
        let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
        let attrs = reply
            .recv_one()
            .map_err(|e| reply_error(WHAT, e, Some(napi_id), None))?;
        parse_napi(WHAT, attrs.get_buf())?
    };
    let queues = queue_dump(&mut sock, Some(info.ifindex))?;
    fill_queues(std::slice::from_mut(&mut info), &queues);
    Ok(info)
}

/// Sets one parameter of one NAPI instance (napi-set). The value is checked against
/// [`NapiParam::max`] first, and nothing is sent when it is out of range; a value the
/// running kernel's narrower policy rejects comes back as [`NapiError::OutOfRange`] with
/// the kernel's bound, also with nothing changed.
pub fn set(napi_id: u32, param: NapiParam, value: u64) -> Result<(), NapiError> {
    const WHAT: &str = "napi-set";
    param.validate(value)?;
    check_not_forced(WHAT)?;
    let mut req = netdev::Request::new().op_napi_set_do();
    {
        let mut enc = req.encode().push_id(napi_id);
        match param {
            // validate() bounded both to u32.
            NapiParam::DeferHardIrqs => enc = enc.push_defer_hard_irqs(value as u32),
            NapiParam::Threaded => enc = enc.push_threaded(value as u32),
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => {
                push_uint(&mut enc, param.attr(), value)
            }
        }
        enc.end_nested();
    }
    let mut sock = NetlinkSocket::new();
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    reply
        .recv_ack()
        .map_err(|e| reply_error(WHAT, e, Some(napi_id), Some((param, value))))?;
    log::debug!("napi {napi_id}: {} = {value}", param.name());
    Ok(())
}

/// The current value of one parameter of one NAPI instance (over [`get`]);
/// [`NapiError::NotSupported`] when the kernel does not report it.
pub fn read(napi_id: u32, param: NapiParam) -> Result<u64, NapiError> {
    get(napi_id)?
        .value(param)
        .ok_or_else(|| NapiError::NotSupported {
            what: format!("napi-get attribute {}", param.name()),
            hint: param.requirement(),
        })
}

/// Whether per-NAPI settings work through netlink here: the netdev family has napi-get and
/// napi-set, and a napi-get dump succeeds. False also while the [`force_sysfs_fallback`]
/// hook is on. Callers use the device-wide sysfs files when this is false.
pub fn napi_netlink_supported() -> bool {
    if sysfs_fallback_forced() {
        return false;
    }
    match kernel_support() {
        Ok(k) if k.napi_get && k.napi_set => {}
        Ok(_) => return false,
        Err(e) => {
            log::warn!("probing netdev netlink: {e}");
            return false;
        }
    }
    match napi_dump(&mut NetlinkSocket::new(), None) {
        Ok(_) => true,
        Err(NapiError::NotSupported { .. }) => false,
        Err(e) => {
            // Not a missing feature: let the real request report it.
            log::warn!("probing napi-get: {e}");
            true
        }
    }
}

/// What the running kernel offers (see [`KernelSupport`]). A kernel without the netdev
/// family gives all-false, not an error.
pub fn kernel_support() -> Result<KernelSupport, NapiError> {
    const WHAT: &str = "getfamily netdev";
    let mut out = KernelSupport::default();
    if sysfs_fallback_forced() {
        out.forced_fallback = true;
        return Ok(out);
    }
    let mut sock = NetlinkSocket::new();
    {
        let mut req = nlctrl::Request::new().op_getfamily_do();
        req.encode().push_family_name_bytes(b"netdev");
        let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
        let attrs = match reply.recv_one() {
            Ok(a) => a,
            Err(e) if e.as_io_error().raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(reply_error(WHAT, e, None, None)),
        };
        out.netdev_family = true;
        if let Ok(ops) = attrs.get_ops() {
            for op in ops {
                match op.get_id() {
                    Ok(CMD_NAPI_GET) => out.napi_get = true,
                    Ok(CMD_NAPI_SET) => out.napi_set = true,
                    Ok(CMD_QUEUE_GET) => out.queue_get = true,
                    _ => {}
                }
            }
        }
    }
    if out.napi_set {
        match napi_set_policy(&mut sock) {
            Ok(max) => out.set_max = max,
            // Only a refinement: kernels without CTRL_CMD_GETPOLICY still work.
            Err(e) => log::debug!("reading the napi-set policy: {e}"),
        }
    }
    Ok(out)
}

/// napi-set's attribute policy (CTRL_CMD_GETPOLICY for one op): parameter -> max value.
fn napi_set_policy(sock: &mut NetlinkSocket) -> Result<BTreeMap<NapiParam, u64>, NapiError> {
    const WHAT: &str = "getpolicy netdev napi-set";
    let mut req = nlctrl::Request::new().op_getpolicy_dump();
    req.encode()
        .push_family_name_bytes(b"netdev")
        .push_op(CMD_NAPI_SET);
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    // Policies are nested [policy index][attribute type] -> policy attributes; the op's
    // do-policy index comes in a separate message.
    let mut policies: BTreeMap<(u16, u16), u64> = BTreeMap::new();
    let mut do_policy = 0u16;
    while let Some(msg) = reply.recv() {
        let msg = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        for (header, body) in utils::IterableChunks::new(msg.get_buf()) {
            match header.r#type {
                CTRL_ATTR_POLICY => {
                    for (idx, attrs) in utils::IterableChunks::new(body) {
                        for (attr, pol) in utils::IterableChunks::new(attrs) {
                            if let Ok(max) = nlctrl::PolicyAttrs::new(pol).get_max_value_u() {
                                policies.insert((idx.r#type, attr.r#type), max);
                            }
                        }
                    }
                }
                CTRL_ATTR_OP_POLICY => {
                    for (_op, pol) in utils::IterableChunks::new(body) {
                        if let Ok(idx) = nlctrl::OpPolicyAttrs::new(pol).get_do() {
                            do_policy = idx as u16;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(NapiParam::ALL
        .into_iter()
        .filter_map(|p| policies.get(&(do_policy, p.attr())).map(|&max| (p, max)))
        .collect())
}

// ---------------------------------------------------------------------------------------
// Device-wide sysfs defaults
// ---------------------------------------------------------------------------------------

const SYS_CLASS_NET: &str = "/sys/class/net";

fn if_nametoindex(iface: &str) -> Option<u32> {
    let c = CString::new(iface).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => None,
        i => Some(i),
    }
}

fn if_indextoname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Kernel interface-name rules (`dev_valid_name`), so a name can never leave the
/// interface's sysfs directory.
fn valid_ifname(iface: &str) -> bool {
    !iface.is_empty()
        && iface.len() < libc::IF_NAMESIZE
        && iface != "."
        && iface != ".."
        && !iface
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// `/sys/class/net/IFACE`, after checking that it shows the interface of the calling
/// thread's network namespace.
fn sysfs_dir(iface: &str) -> Result<PathBuf, NapiError> {
    let no_such = || NapiError::NoSuchInterface {
        iface: iface.to_string(),
    };
    if !valid_ifname(iface) {
        return Err(no_such());
    }
    let here = if_nametoindex(iface).ok_or_else(no_such)?;
    let dir = Path::new(SYS_CLASS_NET).join(iface);
    let index_file = dir.join("ifindex");
    match fs::read_to_string(&index_file) {
        Ok(text) if text.trim().parse::<u32>().ok() == Some(here) => Ok(dir),
        Ok(_) => Err(NapiError::SysfsOtherNamespace {
            iface: iface.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NapiError::SysfsOtherNamespace {
            iface: iface.to_string(),
        }),
        Err(source) => Err(NapiError::Sysfs {
            path: index_file,
            value: None,
            source,
        }),
    }
}

/// Reads a device-wide default from sysfs.
pub fn device_read(iface: &str, param: DeviceParam) -> Result<u64, NapiError> {
    let path = sysfs_dir(iface)?.join(param.file());
    let text = fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NapiError::NotSupported {
            what: format!("sysfs {}", param.file()),
            hint: match param {
                DeviceParam::DeferHardIrqs => "napi_defer_hard_irqs needs Linux 5.7 or later",
                DeviceParam::GroFlushTimeout => "gro_flush_timeout needs Linux 3.19 or later",
                DeviceParam::Threaded => "the threaded file needs Linux 5.12 or later",
            },
        },
        _ => NapiError::Sysfs {
            path: path.clone(),
            value: None,
            source,
        },
    })?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| NapiError::SysfsParse {
            path: path.clone(),
            text: text.trim().to_string(),
        })
}

/// Writes a device-wide default to sysfs; the kernel copies it into every NAPI of the
/// device (replacing per-NAPI values). Out-of-range values are refused before writing.
pub fn device_write(iface: &str, param: DeviceParam, value: u64) -> Result<(), NapiError> {
    param.validate(value)?;
    let path = sysfs_dir(iface)?.join(param.file());
    // No O_CREAT: a missing file must not be created.
    let result = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.to_string().as_bytes()));
    result.map_err(|source| match (param, source.raw_os_error()) {
        (DeviceParam::Threaded, Some(libc::EIO | libc::EOPNOTSUPP)) => NapiError::NoNapi {
            iface: iface.to_string(),
        },
        (_, Some(libc::EPERM | libc::EACCES)) => NapiError::PermissionDenied {
            what: "writing a sysfs NAPI default",
        },
        _ => NapiError::Sysfs {
            path: path.clone(),
            value: Some(value),
            source,
        },
    })?;
    log::debug!("{iface}: sysfs {} = {value}", param.file());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// IRQ discovery
// ---------------------------------------------------------------------------------------

const PROC_INTERRUPTS: &str = "/proc/interrupts";

/// The CPU numbers of a `/proc/interrupts` or `/proc/softirqs` header (`CPU0 CPU1 ...`;
/// offline CPUs are missing); `None` if a column is not `CPUn`.
pub(crate) fn cpu_columns(header: &str) -> Option<Vec<usize>> {
    header
        .split_whitespace()
        .map(|t| t.strip_prefix("CPU").and_then(|n| n.parse().ok()))
        .collect()
}

/// Parses the text of `/proc/interrupts`: the header names the CPU columns (offline CPUs
/// are missing from it), numbered rows become [`IrqLine`]s, named rows (NMI, LOC, ERR, …)
/// are skipped. Rows may have fewer count columns than the header (ERR, MIS).
pub fn parse_interrupts(text: &str) -> Result<Vec<IrqLine>, NapiError> {
    let perr = |line, reason| NapiError::ProcParse {
        path: PROC_INTERRUPTS.into(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_no, header) = lines.next().ok_or_else(|| perr(1, "empty file"))?;
    let cpus = cpu_columns(header)
        .ok_or_else(|| perr(header_no + 1, "header is not a list of CPUn columns"))?;
    if cpus.is_empty() {
        return Err(perr(header_no + 1, "header names no CPU"));
    }
    let width = cpus.iter().max().map_or(0, |m| m + 1);
    let mut out = Vec::new();
    for (_, line) in lines {
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(irq) = label.trim().parse::<u32>() else {
            continue;
        };
        let mut per_cpu = vec![0u64; width];
        let mut tokens = rest.split_whitespace().peekable();
        for &cpu in &cpus {
            match tokens.peek().and_then(|t| t.parse::<u64>().ok()) {
                Some(n) => {
                    per_cpu[cpu] = n;
                    tokens.next();
                }
                None => break,
            }
        }
        let name = tokens.collect::<Vec<_>>().join(" ");
        out.push(IrqLine { irq, name, per_cpu });
    }
    Ok(out)
}

fn read_interrupts() -> Result<Vec<IrqLine>, NapiError> {
    let text = fs::read_to_string(PROC_INTERRUPTS).map_err(|source| NapiError::Proc {
        path: PROC_INTERRUPTS.into(),
        source,
    })?;
    parse_interrupts(&text)
}

/// Per-CPU counts of one IRQ line (indexed by CPU number).
pub fn irq_counts(irq: u32) -> Result<Vec<u64>, NapiError> {
    read_interrupts()?
        .into_iter()
        .find(|l| l.irq == irq)
        .map(|l| l.per_cpu)
        .ok_or(NapiError::NoSuchIrq { irq })
}

/// Whether an IRQ description names the interface: an action token equal to it or
/// starting with it followed by a separator (`eth0`, `eth0-rx-0`, but not `eth01`).
fn mentions(name: &str, iface: &str) -> bool {
    name.split(|c: char| c.is_whitespace() || c == ',')
        .any(|tok| {
            tok.strip_prefix(iface).is_some_and(|rest| {
                rest.is_empty() || !rest.starts_with(|c: char| c.is_ascii_alphanumeric())
            })
        })
}

/// MSI/MSI-X vectors of the interface's device (`device/msi_irqs`, or the parent's for
/// virtio, whose net device hangs below the PCI function). Best effort: empty when sysfs
/// does not show this namespace's interface.
fn msi_irqs(iface: &str) -> BTreeSet<u32> {
    let Ok(dir) = sysfs_dir(iface) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for sub in ["device/msi_irqs", "device/../msi_irqs"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            out.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The IRQ lines of an interface: rows of /proc/interrupts whose action names mention it
/// (most NIC drivers name vectors `IFACE-…`) plus the device's MSI vectors from sysfs
/// (virtio names them `virtioN-input.0`). Empty for purely virtual devices such as veth.
pub fn interrupts_for(iface: &str) -> Result<Vec<IrqLine>, NapiError> {
    let msi = msi_irqs(iface);
    Ok(read_interrupts()?
        .into_iter()
        .filter(|l| msi.contains(&l.irq) || mentions(&l.name, iface))
        .collect())
}

/// Whether an `irqbalance` process is running (it would move IRQ affinities that a
/// tuning relies on). Scans `/proc/*/comm`.
pub fn irqbalance_running() -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        fs::read_to_string(Path::new("/proc").join(pid).join("comm"))
            .is_ok_and(|c| c.trim_end() == "irqbalance")
    })
}

/// The device's XDP feature flags (netdev dev-get `xdp-features`, Linux 6.3+): bit 0 basic
/// XDP in the driver, bit 1 redirect, bit 3 AF_XDP zero-copy (`NETDEV_XDP_ACT_*`).
pub fn xdp_features(ifindex: u32) -> Result<u64, NapiError> {
    const WHAT: &str = "dev-get";
    let mut sock = NetlinkSocket::new();
    let mut req = netdev::Request::new().op_dev_get_do();
    req.encode().push_ifindex(ifindex);
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let attrs = reply
        .recv_one()
        .map_err(|e| reply_error(WHAT, e, None, None))?;
    attrs
        .get_xdp_features()
        .map_err(|_| NapiError::NotSupported {
            what: "xdp-features in dev-get".into(),
            hint: "the netdev family reports XDP features from Linux 6.3",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on the development VM (2 CPUs, virtio NICs), trimmed.
    const SAMPLE: &str = "           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 26:          0         14  IO-APIC   4-edge      ttyS0
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       6273 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       4312          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
NMI:          0          0   Non-maskable interrupts
LOC:     150959     155676   Local timer interrupts
RES:      98652      70585   Rescheduling interrupts
ERR:          0
MIS:          0
PIN:          0          0   Posted-interrupt notification event
";

    #[test]
    fn interrupts_sample() {
        let lines = parse_interrupts(SAMPLE).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.irq).collect::<Vec<_>>(),
            [24, 26, 37, 38, 39]
        );
        let input = &lines[3];
        assert_eq!(input.per_cpu, [0, 6273]);
        assert_eq!(input.name, "PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0");
        assert_eq!(input.total(), 6273);
        assert_eq!(lines[0].name, "IO-APIC 5-edge ACPI:Ged");
    }

    #[test]
    fn interrupts_offline_cpus_and_short_rows() {
        // CPU1 offline: columns are CPU0, CPU2, CPU3.
        let text = "  CPU0 CPU2 CPU3\n\
                    \x20 0:  44  0  7   IO-APIC   2-edge      timer\n\
                    \x20 9:   5          IO-APIC   9-fasteoi   acpi\n\
                    \x2012:\n\
                    130:  1 2 3  IR-PCI-MSI 524288-edge  eth1-TxRx-0, eth1\n\
                    ERR: 0\n";
        let lines = parse_interrupts(text).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].per_cpu, [44, 0, 0, 7]);
        // A short row: missing columns count 0 and the name still parses.
        assert_eq!(lines[1].per_cpu, [5, 0, 0, 0]);
        assert_eq!(lines[1].name, "IO-APIC 9-fasteoi acpi");
        assert_eq!(lines[2].per_cpu, [0, 0, 0, 0]);
        assert_eq!(lines[2].name, "");
        assert_eq!(lines[3].per_cpu, [1, 0, 2, 3]);
        assert!(mentions(&lines[3].name, "eth1"));
        assert!(!mentions(&lines[3].name, "eth"));
        assert!(!mentions("IR-PCI-MSI 1-edge eth10-rx-0", "eth1"));
        assert!(mentions("IR-PCI-MSI 1-edge eth1:lsc", "eth1"));
    }

    #[test]
    fn interrupts_bad_header() {
        assert!(matches!(
            parse_interrupts(""),
            Err(NapiError::ProcParse { line: 1, .. })
        ));
        assert!(matches!(
            parse_interrupts("  0: 1 2 timer\n"),
            Err(NapiError::ProcParse {
                reason: "header is not a list of CPUn columns",
                ..
            })
        ));
    }

    #[test]
    fn live_proc_interrupts_parses() {
        let lines = read_interrupts().unwrap();
        assert!(!lines.is_empty());
        // Counts move between reads; the shape does not.
        assert_eq!(
            irq_counts(lines[0].irq).unwrap().len(),
            lines[0].per_cpu.len()
        );
        assert!(matches!(
            irq_counts(u32::MAX),
            Err(NapiError::NoSuchIrq { irq: u32::MAX })
        ));
        let _ = irqbalance_running();
    }

    #[test]
    fn param_names_round_trip() {
        for p in NapiParam::ALL {
            assert_eq!(NapiParam::from_name(p.name()), Some(p));
            assert_eq!(p.name().parse::<NapiParam>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
            // serde uses the same kebab-case names.
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
            assert_eq!(
                serde_json::from_str::<NapiParam>(&format!("\"{p}\"")).unwrap(),
                p
            );
            assert!(!p.description().is_empty() && p.description().contains(p.since()));
            if let Some(d) = p.device_param() {
                assert_eq!(d.napi_param(), p);
            }
        }
        for d in DeviceParam::ALL {
            assert_eq!(DeviceParam::from_name(d.name()), Some(d));
            assert_eq!(d.name().parse::<DeviceParam>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
            assert_eq!(d.napi_param().device_param(), Some(d));
            assert!(d.description().contains(d.since()));
        }
        assert!(matches!(
            "defer".parse::<NapiParam>(),
            Err(NapiError::UnknownParam { .. })
        ));
        assert_eq!(NapiParam::IrqSuspendTimeout.device_param(), None);
    }

    #[test]
    fn range_validation() {
        assert!(NapiParam::DeferHardIrqs.validate(i32::MAX as u64).is_ok());
        let err = NapiParam::DeferHardIrqs.validate(1 << 31).unwrap_err();
        assert!(matches!(
            err,
            NapiError::OutOfRange {
                param: "defer-hard-irqs",
                value: 0x8000_0000,
                max: 0x7fff_ffff
            }
        ));
        assert!(NapiParam::GroFlushTimeout.validate(u64::MAX).is_ok());
        assert!(NapiParam::IrqSuspendTimeout.validate(u64::MAX).is_ok());
        assert!(NapiParam::Threaded.validate(2).is_ok());
        assert!(NapiParam::Threaded.validate(3).is_err());
        assert!(DeviceParam::Threaded.validate(1).is_ok());
        assert!(DeviceParam::Threaded.validate(2).is_err());
        assert!(DeviceParam::DeferHardIrqs.validate(1 << 31).is_err());
        // set() validates before anything else, even before the test hook.
        assert!(matches!(
            set(1, NapiParam::Threaded, 7),
            Err(NapiError::OutOfRange {
                param: "threaded",
                value: 7,
                max: 2
            })
        ));
    }

    #[test]
    fn env_var_switches_netlink_off() {
        // The variable is read once per process, so check it in a child process.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "tune::napi::tests::env_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env(FORCE_NO_NAPI_NETLINK_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}"
        );
    }

    #[test]
    #[ignore = "run by env_var_switches_netlink_off with the variable set"]
    fn env_child() {
        if std::env::var_os(FORCE_NO_NAPI_NETLINK_ENV).is_none() {
            return;
        }
        assert!(sysfs_fallback_forced());
        assert!(!napi_netlink_supported());
        assert!(matches!(list_all(), Err(NapiError::NotSupported { .. })));
        assert!(matches!(get(1), Err(NapiError::NotSupported { .. })));
        force_sysfs_fallback(false);
        assert!(
            !sysfs_fallback_forced(),
            "the function overrides the variable"
        );
    }

    fn attr(buf: &mut Vec<u8>, ty: u16, body: &[u8]) {
        utils::push_header(buf, ty, body.len() as u16);
        buf.extend_from_slice(body);
    }

    #[test]
    fn napi_reply_parsing_handles_8_byte_uints() {
        let mut buf = Vec::new();
        attr(&mut buf, ATTR_ID, &8193u32.to_ne_bytes());
        attr(&mut buf, ATTR_IFINDEX, &7u32.to_ne_bytes());
        attr(&mut buf, ATTR_DEFER_HARD_IRQS, &100u32.to_ne_bytes());
        attr(
            &mut buf,
            ATTR_GRO_FLUSH_TIMEOUT,
            &5_000_000_000u64.to_ne_bytes(),
        );
        attr(
            &mut buf,
            ATTR_IRQ_SUSPEND_TIMEOUT,
            &20_000_000u32.to_ne_bytes(),
        );
        attr(&mut buf, ATTR_THREADED, &1u32.to_ne_bytes());
        attr(&mut buf, 99, &[1, 2, 3, 4]); // unknown, newer kernel
        let info = parse_napi("test", &buf).unwrap();
        assert_eq!((info.id, info.ifindex), (8193, 7));
        assert_eq!(info.gro_flush_timeout_ns, Some(5_000_000_000));
        assert_eq!(info.irq_suspend_timeout_ns, Some(20_000_000));
        assert_eq!(info.value(NapiParam::Threaded), Some(1));
        assert_eq!((info.irq, info.pid), (None, None));

        let mut short = Vec::new();
        attr(&mut short, ATTR_IFINDEX, &7u32.to_ne_bytes());
        assert!(matches!(
            parse_napi("test", &short),
            Err(NapiError::BadReply { attr: "id", .. })
        ));
        attr(&mut short, ATTR_ID, &1u32.to_ne_bytes());
        attr(&mut short, ATTR_GRO_FLUSH_TIMEOUT, &[1, 2]);
        assert!(matches!(
            parse_napi("test", &short),
            Err(NapiError::BadReply {
                attr: "gro-flush-timeout",
                ..
            })
        ));

        let mut pushed = Vec::new();
        push_uint(&mut pushed, ATTR_GRO_FLUSH_TIMEOUT, 200_000);
        push_uint(&mut pushed, ATTR_IRQ_SUSPEND_TIMEOUT, 1 << 40);
        attr(&mut pushed, ATTR_ID, &3u32.to_ne_bytes());
        attr(&mut pushed, ATTR_IFINDEX, &3u32.to_ne_bytes());
        let back = parse_napi("test", &pushed).unwrap();
        assert_eq!(back.gro_flush_timeout_ns, Some(200_000));
        assert_eq!(back.irq_suspend_timeout_ns, Some(1 << 40));
    }

    #[test]
    fn kernel_errors_are_classified() {
        let err = |code| io::Error::from_raw_os_error(code);
        let p = Some((NapiParam::Threaded, 2));
        assert!(matches!(
            classify("napi-set", err(libc::ENOENT), None, None, Some(5), p),
            NapiError::NoSuchNapi { id: 5 }
        ));
        // Messages as 6.18 sends them (see the integration tests).
        assert!(matches!(
            classify(
                "napi-set",
                err(libc::ERANGE),
                Some("integer out of range".into()),
                Some(1),
                Some(5),
                p
            ),
            NapiError::OutOfRange {
                param: "threaded",
                value: 2,
                max: 1
            }
        ));
        assert!(matches!(
            classify(
                "napi-set",
                err(libc::EINVAL),
                Some("Unknown attribute type".into()),
                None,
                Some(5),
                p
            ),
            NapiError::NotSupported { .. }
        ));
        assert!(matches!(
            classify("napi-set", err(libc::EOPNOTSUPP), None, None, Some(5), p),
            NapiError::NotSupported { .. }
        ));
        assert!(matches!(
            classify("napi-set", err(libc::EPERM), None, None, Some(5), p),
            NapiError::PermissionDenied { what: "napi-set" }
        ));
        let other = classify(
            "napi-get dump",
            err(libc::EBUSY),
            Some("busy".into()),
            None,
            None,
            None,
        );
        assert!(other.to_string().contains("(kernel: busy)"), "{other}");
        assert!(matches!(
            request_error("napi-get", err(libc::ENOENT)),
            NapiError::NotSupported {
                hint: FAMILY_HINT,
                ..
            }
        ));
    }

    #[test]
    fn interface_names_are_checked() {
        for bad in ["", "..", "a/b", "a b", "0123456789abcdef"] {
            assert!(!valid_ifname(bad), "{bad:?}");
            assert!(matches!(
                device_read(bad, DeviceParam::Threaded),
                Err(NapiError::NoSuchInterface { .. })
            ));
        }
        assert!(valid_ifname("eth0") && valid_ifname("nm123x4a"));
        assert!(matches!(
            device_write("nosuchif9", DeviceParam::GroFlushTimeout, 1),
            Err(NapiError::NoSuchInterface { .. })
        ));
        assert!(matches!(
            device_write("nosuchif9", DeviceParam::Threaded, 5),
            Err(NapiError::OutOfRange { .. })
        ));
    }
}
