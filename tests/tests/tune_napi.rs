//! Per-NAPI settings over netdev netlink ([`netmit_user::sys::napi`]) against the kernel,
//! on a veth of a fresh testbed. A veth has a NAPI instance only with native XDP attached
//! (done with the `netmit` binary) or GRO on, so every test makes its own.
//!
//! Netlink calls run on a thread inside the namespace ([`Testbed::in_ns`]). sysfs cannot be
//! read that way: `/sys/class/net` lists the devices of the namespace that *mounted* sysfs.
//! [`with_ns_sysfs`] therefore gives the namespace thread its own mount namespace
//! (`unshare(CLONE_NEWNS)`, which on a thread also unshares its `fs_struct`), makes every
//! mount in it a slave so nothing propagates back, and mounts a fresh sysfs on `/sys` —
//! what `ip netns exec` does, but for one thread only. The rest of the test process keeps
//! the host's `/sys`, including bpffs at `/sys/fs/bpf` (checked in
//! `device_defaults_round_trip`); the mount namespace disappears with the thread.
//!
//! What the kernel (6.18) does, as asserted here:
//! - napi-set values read back through napi-get, but the device-wide sysfs files keep the
//!   device's own default: a per-NAPI set is not reflected in sysfs;
//! - a sysfs write sets the device default *and* every NAPI of the device;
//! - threaded 1 starts a `napi/<dev>-<id>` kthread whose pid napi-get reports; 2
//!   (busy-poll) is refused with ERANGE before Linux 6.19;
//! - an unknown NAPI id is ENOENT with the `id` attribute flagged in the extended ack.
//!
//! The sysfs-only mode (`System::sysfs_only`) is a value, not a process-wide switch, so
//! these tests run in parallel.

use std::{fs, io};

use netmit_user::{
    host::{Host, System},
    sys::{
        Netdev, NetdevError,
        napi::{self, DeviceParam, NapiError, NapiInfo, NapiParam, QueueKind},
    },
};
use tests::{
    netmit::{netmit, pin_dir},
    support::require_root,
    testbed::{Side, Testbed},
};

/// An id no NAPI has (ids start above NR_CPUS and count up).
const BOGUS_NAPI: u32 = 0x7fff_fff0;

/// Attaches netmit's XDP program in native mode to side A's veth, which gives it a NAPI.
fn attach_native(tb: &Testbed) {
    let run = netmit(tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
    assert!(run.ok, "netmit attach --mode native failed: {}", run.stderr);
}

fn detach(tb: &Testbed) {
    let run = netmit(tb, Side::A, &["detach", tb.if_a()]);
    assert!(run.ok, "netmit detach failed: {}", run.stderr);
}

/// The single NAPI of side A's veth.
fn napi_a(tb: &Testbed) -> NapiInfo {
    let dev = tb.netdev(Side::A);
    let list = tb.in_ns(Side::A, || napi::list(&dev)).expect("napi list");
    assert_eq!(list.len(), 1, "one NAPI per veth rx queue: {list:?}");
    list.into_iter().next().expect("one NAPI")
}

fn get(tb: &Testbed, id: u32) -> Result<NapiInfo, NapiError> {
    tb.in_ns(Side::A, || napi::get(id))
}

fn set(tb: &Testbed, id: u32, param: NapiParam, value: u64) -> Result<(), NapiError> {
    tb.in_ns(Side::A, || napi::set(id, param, value))
}

fn mount(src: &str, target: &str, fstype: Option<&str>, flags: libc::c_ulong) -> io::Result<()> {
    netmit_user::sys::mount::mount(src, std::path::Path::new(target), fstype, flags)
}

/// Runs `f` on a thread in `side`'s network namespace that sees a sysfs of that namespace
/// on `/sys` (see the module documentation). Only this thread's view changes.
fn with_ns_sysfs<T: Send>(tb: &Testbed, side: Side, f: impl FnOnce() -> T + Send) -> T {
    tb.in_ns(side, || {
        // CLONE_NEWNS implies CLONE_FS: the thread stops sharing root/cwd with the rest
        // of the process.
        netmit_user::sys::mount::unshare_thread_mounts().expect("unshare(CLONE_NEWNS)");
        // Slave, not shared: the sysfs mount below must not propagate to the host.
        mount("none", "/", None, libc::MS_REC | libc::MS_SLAVE).expect("make / rslave");
        mount("sysfs", "/sys", Some("sysfs"), 0).expect("mount sysfs on /sys");
        f()
    })
}

fn statfs_type(path: &str) -> i64 {
    netmit_user::sys::mount::fs_type(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("statfs {path}: {e}"))
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Mount points of sysfs on `/sys` in this process's (main thread's) mount namespace.
fn host_sys_mounts() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("/sys"))
        .count()
}

#[test]
fn list_get_and_queues() {
    if !require_root("list_get_and_queues") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let ifindex = tb.ifindex_a();
    let dev = tb.netdev(Side::A);

    // A plain veth has no NAPI: an empty list, not an error.
    assert_eq!(
        tb.in_ns(Side::A, || napi::list(&dev)).expect("list"),
        vec![]
    );
    // An interface that does not exist is an error.
    let gone = Netdev {
        ifindex: 0x7fff_0000,
        ..dev.clone()
    };
    assert!(matches!(
        tb.in_ns(Side::A, || napi::list(&gone)),
        Err(NapiError::NoSuchIfindex {
            ifindex: 0x7fff_0000
        })
    ));
    // A device of this namespace asked about from another one is refused.
    assert!(matches!(
        napi::list(&dev),
        Err(NapiError::Netdev(NetdevError::OtherNamespace { .. }))
    ));

    attach_native(&tb);
    let info = napi_a(&tb);
    assert_eq!(info.ifindex, ifindex);
    // The NAPI services rx queue 0. veth (6.18) does not link queues to NAPIs
    // (netif_queue_set_napi), so queue-get shows the queue without a napi-id.
    let queues = tb.in_ns(Side::A, || napi::queues(&dev)).expect("queues");
    let rx0 = queues
        .iter()
        .find(|q| q.kind == QueueKind::Rx && q.id == 0)
        .expect("rx queue 0");
    match rx0.napi_id {
        None => assert_eq!(info.rx_queues, Vec::<u32>::new(), "{info:?}"),
        Some(n) => assert_eq!(
            (n, info.rx_queues.as_slice()),
            (info.id, &[0][..]),
            "{info:?}"
        ),
    }
    assert_eq!(rx0.ifindex, ifindex);
    assert_eq!(info.irq, None, "a veth NAPI has no IRQ");
    assert_eq!(get(&tb, info.id).expect("get"), info);
    // The dump of the whole namespace has it too, and nothing of other namespaces.
    let all = tb.in_ns(Side::A, napi::list_all).expect("list_all");
    assert_eq!(all, vec![info.clone()]);
    // Netlink replies belong to the caller's namespace: the host does not see this NAPI.
    assert!(
        !napi::list_all()
            .unwrap_or_default()
            .iter()
            .any(|n| n.id == info.id && n.ifindex == ifindex)
    );
    let support = tb
        .in_ns(Side::A, napi::kernel_support)
        .expect("kernel support");
    assert!(
        support.napi_get && support.napi_set && support.queue_get,
        "{support:?}"
    );
    assert_eq!(
        support.set_max.get(&NapiParam::DeferHardIrqs),
        Some(&(i32::MAX as u64))
    );
    assert_eq!(
        support.set_max.get(&NapiParam::GroFlushTimeout),
        Some(&u64::MAX)
    );
    assert!(tb.in_ns(Side::A, napi::napi_netlink_supported));
    // The veth has no IRQ line of its own.
    assert_eq!(
        tb.in_ns(Side::A, || napi::interrupts_for(&dev))
            .expect("interrupts"),
        vec![]
    );

    detach(&tb);
    assert_eq!(
        tb.in_ns(Side::A, || napi::list(&dev)).expect("list"),
        vec![]
    );

    // GRO on gives a veth a NAPI as well.
    tb.set_gro(Side::A, true).expect("gro on");
    let gro = napi_a(&tb);
    assert_eq!(gro.ifindex, ifindex);
    tb.set_gro(Side::A, false).expect("gro off");
    assert_eq!(
        tb.in_ns(Side::A, || napi::list(&dev)).expect("list"),
        vec![]
    );
}

#[test]
fn set_reads_back_via_netlink_and_not_sysfs() {
    if !require_root("set_reads_back_via_netlink_and_not_sysfs") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    attach_native(&tb);
    let id = napi_a(&tb).id;
    let dev = tb.netdev(Side::A);
    let sysfs =
        |param| with_ns_sysfs(&tb, Side::A, || napi::device_read(&dev, param)).expect("sysfs read");
    assert_eq!(sysfs(DeviceParam::DeferHardIrqs), 0);
    assert_eq!(sysfs(DeviceParam::GroFlushTimeout), 0);

    set(&tb, id, NapiParam::DeferHardIrqs, 100).expect("set defer-hard-irqs");
    assert_eq!(get(&tb, id).expect("get").defer_hard_irqs, Some(100));
    assert_eq!(
        tb.in_ns(Side::A, || napi::read(id, NapiParam::DeferHardIrqs))
            .expect("read"),
        100
    );
    // Per-NAPI values do not show in the device-wide file.
    assert_eq!(
        sysfs(DeviceParam::DeferHardIrqs),
        0,
        "sysfs shows the device default"
    );

    set(&tb, id, NapiParam::GroFlushTimeout, 200_000).expect("set gro-flush-timeout");
    assert_eq!(
        get(&tb, id).expect("get").gro_flush_timeout_ns,
        Some(200_000)
    );
    assert_eq!(
        sysfs(DeviceParam::GroFlushTimeout),
        0,
        "sysfs shows the device default"
    );
    // Above u32: sent and read back as 8-byte attributes.
    set(&tb, id, NapiParam::GroFlushTimeout, 5_000_000_000).expect("set 5 s");
    assert_eq!(
        get(&tb, id).expect("get").gro_flush_timeout_ns,
        Some(5_000_000_000)
    );
    set(&tb, id, NapiParam::GroFlushTimeout, 200_000).expect("set gro-flush-timeout");

    match set(&tb, id, NapiParam::IrqSuspendTimeout, 20_000_000) {
        Ok(()) => {
            assert_eq!(
                get(&tb, id).expect("get").irq_suspend_timeout_ns,
                Some(20_000_000)
            );
        }
        Err(e @ NapiError::NotSupported { .. }) => {
            eprintln!("SKIP irq-suspend-timeout: {e} (this kernel lacks it; Linux 6.13 has it)");
        }
        Err(e) => panic!("set irq-suspend-timeout: {e}"),
    }

    set(&tb, id, NapiParam::Threaded, 1).expect("set threaded");
    let info = get(&tb, id).expect("get");
    assert_eq!(info.threaded, Some(1));
    let pid = info.pid.expect("a threaded NAPI reports its kthread pid");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).expect("kthread comm");
    assert_eq!(
        comm.trim_end(),
        format!("napi/{}-{id}", tb.if_a()),
        "kthread name"
    );
    assert_eq!(
        sysfs(DeviceParam::Threaded),
        0,
        "sysfs threaded shows the device default"
    );
    set(&tb, id, NapiParam::Threaded, 0).expect("set threaded 0");
    let info = get(&tb, id).expect("get");
    assert_eq!((info.threaded, info.pid), (Some(0), None));
    let gone = (0..100).any(|_| {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        gone
    });
    assert!(gone, "kthread {pid} still exists after threaded 0");

    // Busy-poll mode (2) exists from Linux 6.19; older kernels refuse it with their bound.
    let max = tb
        .in_ns(Side::A, napi::kernel_support)
        .expect("support")
        .set_max[&NapiParam::Threaded];
    match set(&tb, id, NapiParam::Threaded, 2) {
        Ok(()) => {
            assert!(max >= 2);
            assert_eq!(get(&tb, id).expect("get").threaded, Some(2));
            set(&tb, id, NapiParam::Threaded, 0).expect("threaded back to 0");
        }
        Err(NapiError::OutOfRange {
            param: "threaded",
            value: 2,
            max: kernel_max,
        }) => {
            assert_eq!((max, kernel_max), (1, 1));
            assert_eq!(get(&tb, id).expect("get").threaded, Some(0), "unchanged");
        }
        Err(e) => panic!("threaded 2: {e}"),
    }

    // The other settings survived all of that.
    let info = get(&tb, id).expect("get");
    assert_eq!(
        (info.defer_hard_irqs, info.gro_flush_timeout_ns),
        (Some(100), Some(200_000))
    );
    detach(&tb);
}

#[test]
fn errors_change_nothing() {
    if !require_root("errors_change_nothing") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    attach_native(&tb);
    let id = napi_a(&tb).id;
    set(&tb, id, NapiParam::DeferHardIrqs, 100).expect("set");

    assert!(matches!(
        get(&tb, BOGUS_NAPI),
        Err(NapiError::NoSuchNapi { id: BOGUS_NAPI })
    ));
    assert!(matches!(
        set(&tb, BOGUS_NAPI, NapiParam::DeferHardIrqs, 1),
        Err(NapiError::NoSuchNapi { id: BOGUS_NAPI })
    ));
    assert!(matches!(
        tb.in_ns(Side::A, || napi::read(BOGUS_NAPI, NapiParam::Threaded)),
        Err(NapiError::NoSuchNapi { .. })
    ));

    let err = set(&tb, id, NapiParam::DeferHardIrqs, 1 << 31).expect_err("above S32_MAX");
    assert!(
        matches!(
            err,
            NapiError::OutOfRange {
                param: "defer-hard-irqs",
                value: 0x8000_0000,
                max: 0x7fff_ffff
            }
        ),
        "{err}"
    );
    assert_eq!(
        get(&tb, id).expect("get").defer_hard_irqs,
        Some(100),
        "unchanged"
    );

    // sysfs: a device that is gone, and a sysfs that shows another namespace.
    let dev = tb.netdev(Side::A);
    let gone = Netdev {
        ifindex: 0x7fff_0001,
        ..dev.clone()
    };
    assert!(matches!(
        tb.in_ns(Side::A, || napi::device_read(
            &gone,
            DeviceParam::DeferHardIrqs
        )),
        Err(NapiError::NoSuchIfindex { .. })
    ));
    // Without the remount, /sys/class/net is the host's: refused, not misread.
    assert!(matches!(
        tb.in_ns(Side::A, || napi::device_write(
            &dev,
            DeviceParam::GroFlushTimeout,
            1
        )),
        Err(NapiError::SysfsOtherNamespace { .. })
    ));
    // From the host's namespace the device is refused outright.
    assert!(matches!(
        napi::device_read(&dev, DeviceParam::GroFlushTimeout),
        Err(NapiError::Netdev(NetdevError::OtherNamespace { .. }))
    ));
    detach(&tb);
}

#[test]
fn device_defaults_round_trip() {
    if !require_root("device_defaults_round_trip") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    attach_native(&tb);
    let pins = pin_dir(&tb, Side::A);
    assert!(pins.exists());
    let host_mounts = host_sys_mounts();
    let (dev, dev_b, if_b) = (
        tb.netdev(Side::A),
        tb.netdev(Side::B),
        tb.if_b().to_string(),
    );

    let napis = with_ns_sysfs(&tb, Side::A, || {
        // This thread sees the namespace's sysfs; the rest of the process still sees bpffs.
        assert_eq!(statfs_type("/sys"), SYSFS_MAGIC);
        assert_ne!(
            statfs_type("/sys/fs/bpf"),
            BPF_FS_MAGIC,
            "hidden for this thread"
        );
        assert_eq!(
            statfs_type("/proc/self/root/sys/fs/bpf"),
            BPF_FS_MAGIC,
            "main thread's view"
        );

        let mut seen = Vec::new();
        for (param, value) in [
            (DeviceParam::DeferHardIrqs, 7),
            (DeviceParam::GroFlushTimeout, 30_000),
            (DeviceParam::Threaded, 1),
        ] {
            napi::device_write(&dev, param, value).expect("device write");
            assert_eq!(
                napi::device_read(&dev, param).expect("device read"),
                value,
                "{param}"
            );
            // A device-wide write reaches every NAPI of the device.
            let list = napi::list(&dev).expect("list");
            seen.push((param, list[0].value(param.napi_param())));
        }
        assert!(matches!(
            napi::device_write(&dev, DeviceParam::Threaded, 2),
            Err(NapiError::OutOfRange {
                param: "threaded",
                value: 2,
                max: 1
            })
        ));
        assert_eq!(
            napi::device_read(&dev, DeviceParam::Threaded).expect("read"),
            1,
            "unchanged"
        );
        for param in DeviceParam::ALL {
            napi::device_write(&dev, param, 0).expect("back to 0");
        }
        seen
    });
    assert_eq!(
        napis,
        vec![
            (DeviceParam::DeferHardIrqs, Some(7)),
            (DeviceParam::GroFlushTimeout, Some(30_000)),
            (DeviceParam::Threaded, Some(1)),
        ]
    );
    // Side B's veth has no NAPI (no XDP, GRO off): the kernel refuses threaded with EIO.
    let err = with_ns_sysfs(&tb, Side::B, || {
        napi::device_write(&dev_b, DeviceParam::Threaded, 1)
    })
    .expect_err("no NAPI on B");
    assert!(
        matches!(&err, NapiError::NoNapi { iface } if *iface == if_b),
        "{err}"
    );

    // Nothing leaked out of the thread's mount namespace.
    assert_eq!(host_sys_mounts(), host_mounts);
    assert_eq!(statfs_type("/sys/fs/bpf"), BPF_FS_MAGIC);
    assert!(pins.exists(), "netmit's pins still visible to the process");
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(tb.if_a())
            .exists()
    );
    detach(&tb);
}

#[test]
fn sysfs_only_host() {
    if !require_root("sysfs_only_host") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    attach_native(&tb);
    let id = napi_a(&tb).id;
    let dev = tb.netdev(Side::A);
    let host = System::new().sysfs_only();
    assert!(!tb.in_ns(Side::A, || host.napi_netlink()));
    assert!(matches!(
        tb.in_ns(Side::A, || host.napi_list(&dev)),
        Err(NapiError::NotSupported { .. })
    ));
    assert!(matches!(
        tb.in_ns(Side::A, || host.napi_set(id, NapiParam::DeferHardIrqs, 5)),
        Err(NapiError::NotSupported { .. })
    ));
    assert!(
        tb.in_ns(Side::A, || host.napi_support())
            .expect("support")
            .forced_fallback
    );
    // Range checks still come first.
    assert!(matches!(
        tb.in_ns(Side::A, || host.napi_set(id, NapiParam::Threaded, 9)),
        Err(NapiError::OutOfRange { .. })
    ));
    // The default host uses netlink here, and nothing was sent by the other one.
    assert!(tb.in_ns(Side::A, || System::new().napi_netlink()));
    assert_eq!(get(&tb, id).expect("get").defer_hard_irqs, Some(0));
    detach(&tb);
}
