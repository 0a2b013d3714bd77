//! Attaching the steering program to an interface and detaching it.
//!
//! Attachment uses a bpf_link pinned in bpffs, so it outlives the command and every later
//! command finds it (see [`super::pins`]). Every check runs before anything is changed;
//! a failure after the first change rolls back what was done.

use std::{fs, io};

use aya::programs::{ProgramError, Xdp, XdpMode, links::FdLink};
use netmit_common::{AttachMode, names};

use super::{
    load_object,
    pins::{PinLayout, bpffs_mounted},
    tables::{SteerTables, TableError},
};
use crate::steer::Rule;
use crate::sys::link::{self as kernel, KernelError, XdpAttached};

/// Which XDP mode to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModeRequest {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// What `attach` should do.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// Mode to attach in.
    pub mode: ModeRequest,
    /// Initial steering rules.
    pub rules: Vec<Rule>,
    /// Replace an XDP program that netmit did not attach.
    pub force: bool,
}

/// A successful attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Mode obtained.
    pub mode: AttachMode,
    /// Kernel program id.
    pub prog_id: u32,
    /// Ids given to the initial rules.
    pub rule_ids: Vec<u16>,
    /// Program id of a foreign program removed because of `force`.
    pub replaced: Option<u32>,
    /// Why native mode was not used when `Auto` fell back to generic.
    pub native_error: Option<String>,
}

/// Errors of attach and detach.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// Missing privileges.
    #[error("{0} needs root (CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN): run it with sudo")]
    NotPermitted(&'static str),
    /// bpffs is not mounted.
    #[error("no bpffs at /sys/fs/bpf: mount it with `mount -t bpf bpf /sys/fs/bpf`")]
    NoBpffs,
    /// The interface does not exist.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// netmit is already attached.
    #[error(
        "netmit is already attached to {iface} (program {prog_id}); change rules with \
         `netmit steer add|del {iface}` or run `netmit detach {iface}` first"
    )]
    AlreadyAttached {
        /// Interface.
        iface: String,
        /// Program id.
        prog_id: u32,
    },
    /// Another XDP program is attached.
    #[error(
        "{iface} already has an XDP program that netmit did not attach (id {prog_id}, name \
         {name}, {mode:?} mode); netmit leaves it alone unless you pass --force to replace it"
    )]
    Foreign {
        /// Interface.
        iface: String,
        /// Program id.
        prog_id: u32,
        /// Program name.
        name: String,
        /// Its mode.
        mode: XdpAttached,
    },
    /// Not attached.
    #[error("netmit is not attached to {iface}{note}; nothing to detach")]
    NotAttached {
        /// Interface.
        iface: String,
        /// Extra information (a foreign program that is present).
        note: String,
    },
    /// Too many rules.
    #[error("{0} rules given; an interface holds at most 256")]
    TooManyRules(usize),
    /// Loading the program failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The verifier or attach failed.
    #[error("{what}")]
    Program {
        /// The step.
        what: String,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// The requested mode is not available.
    #[error("cannot attach to {iface} in {mode} mode: {reason}; try --mode generic")]
    Mode {
        /// Interface.
        iface: String,
        /// Mode requested.
        mode: &'static str,
        /// The kernel's answer.
        reason: String,
    },
    /// Map access failed.
    #[error(transparent)]
    Tables(#[from] TableError),
    /// Pin directory handling failed.
    #[error("{what} {path}")]
    Pins {
        /// The step.
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Loads the steering program, attaches it to `iface` and pins it.
///
/// # Errors
///
/// Fails without changing anything if the caller lacks privileges, the interface does
/// not exist, netmit or (without `force`) another program is attached, or there are too
/// many rules. A failure after the pin directory was created removes it again.
pub fn attach(iface: &str, opts: &AttachOptions) -> Result<Attachment, AttachError> {
    if !kernel::has_bpf_privileges() {
        return Err(AttachError::NotPermitted("netmit attach"));
    }
    let ifindex = kernel::ifindex(iface)?;
    if !bpffs_mounted() {
        return Err(AttachError::NoBpffs);
    }
    let layout = PinLayout::for_iface(iface);
    let _lock = PinsLock::acquire()?;
    if layout.is_attached() {
        let prog_id = kernel::pinned_link_info(&layout.link())
            .map(|l| l.prog_id)
            .unwrap_or(0);
        return Err(AttachError::AlreadyAttached {
            iface: iface.into(),
            prog_id,
        });
    }
    if opts.rules.len() > netmit_common::MAX_RULES {
        return Err(AttachError::TooManyRules(opts.rules.len()));
    }
    let foreign = kernel::xdp_state(ifindex)?;
    if let Some(state) = foreign
        && !opts.force
    {
        return Err(AttachError::Foreign {
            iface: iface.into(),
            prog_id: state.prog_id,
            name: kernel::program_name(state.prog_id).unwrap_or_else(|| "?".into()),
            mode: state.attached,
        });
    }

    let mut ebpf = load_object(false)?;
    let program: &mut Xdp = ebpf
        .program_mut(names::PROG_STEER)
        .expect("the object defines the steering program")
        .try_into()
        .map_err(|source| AttachError::Program {
            what: "program type".into(),
            source,
        })?;
    program.load().map_err(|source| AttachError::Program {
        what: "loading the XDP program".into(),
        source,
    })?;

    // Checks are done; from here on, changes are rolled back on error.
    let replaced = match foreign {
        Some(state) => {
            remove_foreign(ifindex, state)?;
            Some(state.prog_id)
        }
        None => None,
    };
    if let Some(parent) = layout.dir().parent() {
        fs::create_dir_all(parent).map_err(|source| AttachError::Pins {
            what: "creating",
            path: parent.display().to_string(),
            source,
        })?;
    }
    // A directory without a link is the leftover of an interrupted attach.
    let _ = fs::remove_dir_all(layout.dir());
    fs::create_dir(layout.dir()).map_err(|source| AttachError::Pins {
        what: "creating",
        path: layout.dir().display().to_string(),
        source,
    })?;

    let result = attach_pinned(&mut ebpf, iface, ifindex, &layout, opts);
    if result.is_err() {
        let _ = fs::remove_dir_all(layout.dir());
    }
    let (mode, prog_id, rule_ids, native_error) = result?;
    Ok(Attachment {
        iface: iface.into(),
        ifindex,
        mode,
        prog_id,
        rule_ids,
        replaced,
        native_error,
    })
}

type Attached = (AttachMode, u32, Vec<u16>, Option<String>);

fn attach_pinned(
    ebpf: &mut aya::Ebpf,
    iface: &str,
    ifindex: u32,
    layout: &PinLayout,
    opts: &AttachOptions,
) -> Result<Attached, AttachError> {
    let mut tables = SteerTables::from_ebpf(ebpf, Some(layout))?;
    let rule_ids = tables.add_rules(&opts.rules)?;

    let program: &mut Xdp = ebpf
        .program_mut(names::PROG_STEER)
        .expect("loaded above")
        .try_into()
        .map_err(|source| AttachError::Program {
            what: "program type".into(),
            source,
        })?;
    let attempts: &[(XdpMode, AttachMode, &str)] = match opts.mode {
        ModeRequest::Auto => &[
            (XdpMode::Driver, AttachMode::Native, "native"),
            (XdpMode::Skb, AttachMode::Generic, "generic"),
        ],
        ModeRequest::Native => &[(XdpMode::Driver, AttachMode::Native, "native")],
        ModeRequest::Generic => &[(XdpMode::Skb, AttachMode::Generic, "generic")],
    };
    let mut native_error = None;
    let mut last = None;
    for &(xdp_mode, mode, mode_name) in attempts {
        match program.attach_to_if_index(ifindex, xdp_mode) {
            Ok(link_id) => {
                let link = program
                    .take_link(link_id)
                    .map_err(|source| AttachError::Program {
                        what: "taking the link".into(),
                        source,
                    })?;
                let fd_link: FdLink = link.try_into().map_err(|e| AttachError::Mode {
                    iface: iface.into(),
                    mode: mode_name,
                    reason: format!("the kernel attached without a bpf_link ({e}); netmit needs bpf_link (Linux 5.9+)"),
                })?;
                fd_link.pin(layout.link()).map_err(|e| AttachError::Pins {
                    what: "pinning the link at",
                    path: format!("{} ({e})", layout.link().display()),
                    source: io::Error::other(e.to_string()),
                })?;
                tables.set_attachment(ifindex, mode)?;
                let prog_id = program
                    .info()
                    .map_err(|source| AttachError::Program {
                        what: "program info".into(),
                        source,
                    })?
                    .id();
                return Ok((mode, prog_id, rule_ids, native_error));
            }
            Err(e) => {
                let reason = crate::error::chain(&e);
                if mode == AttachMode::Native {
                    native_error = Some(reason.clone());
                }
                last = Some((mode_name, reason));
            }
        }
    }
    let (mode, reason) = last.expect("at least one attempt");
    Err(AttachError::Mode {
        iface: iface.into(),
        mode,
        reason,
    })
}

fn remove_foreign(ifindex: u32, state: kernel::XdpState) -> Result<(), AttachError> {
    // Link info carries an ifindex but no network namespace, and ifindexes repeat across
    // namespaces: the link must also run the program that rtnetlink reports for this very
    // device, or it may be another namespace's attachment.
    match kernel::xdp_link_of(ifindex, state.prog_id)? {
        Some(link) => kernel::detach_link_id(link.id)?,
        None => kernel::netlink_detach(ifindex, state.attached)?,
    }
    // Confirm the interface is free before attaching (a removal that did not take
    // effect would otherwise surface as an EBUSY from bpf_link_create).
    for _ in 0..40 {
        if kernel::xdp_state(ifindex)?.is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(AttachError::Pins {
        what: "removing the foreign XDP program from",
        path: format!("ifindex {ifindex}"),
        source: io::Error::other("the kernel still reports an XDP program after 2 s"),
    })
}

/// Detaches netmit from `iface` and removes its pins.
///
/// The link is detached explicitly (`BPF_LINK_DETACH`), so the program leaves the
/// interface even if another process still holds the link open.
///
/// # Errors
///
/// [`AttachError::NotAttached`] (changing nothing) when netmit has no pins for `iface`.
pub fn detach(iface: &str) -> Result<Option<u32>, AttachError> {
    let layout = PinLayout::for_iface(iface);
    // Without privileges the lock cannot be taken (the root is root's); the checks below
    // still say what is wrong.
    let root_exists = std::path::Path::new(super::pins::BPFFS_ROOT).exists();
    let _lock = if kernel::has_bpf_privileges() && root_exists {
        Some(PinsLock::acquire()?)
    } else {
        None
    };
    if !layout.is_attached() {
        let note = match kernel::ifindex(iface) {
            Err(_) if !layout.dir().exists() => {
                return Err(AttachError::Kernel(KernelError::NoSuchInterface(
                    iface.into(),
                )));
            }
            Ok(ifindex) => match kernel::xdp_state(ifindex).ok().flatten() {
                Some(s) => format!(
                    " (it has an XDP program netmit did not attach, id {}; netmit leaves it alone)",
                    s.prog_id
                ),
                None => String::new(),
            },
            Err(_) => String::new(),
        };
        if layout.dir().exists() && kernel::has_bpf_privileges() {
            // Leftover of an interrupted attach: tidy it, but still report "not attached".
            let _ = fs::remove_dir_all(layout.dir());
        }
        return Err(AttachError::NotAttached {
            iface: iface.into(),
            note,
        });
    }
    if !kernel::has_bpf_privileges() {
        return Err(AttachError::NotPermitted("netmit detach"));
    }
    let link = kernel::obj_get(&layout.link())?;
    let prog_id = kernel::pinned_link_info(&layout.link())
        .ok()
        .map(|l| l.prog_id);
    // A link whose interface disappeared is already defunct; detaching it is a no-op.
    match kernel::detach_link_fd(&link) {
        Ok(()) => {}
        Err(KernelError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(e.into()),
    }
    // A daemon watching the interface may tidy the pins of the now detached program at
    // the same moment (CLI and daemon work side by side): entries that vanish under us
    // are gone either way.
    match fs::remove_dir_all(layout.dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AttachError::Pins {
                what: "removing",
                path: layout.dir().display().to_string(),
                source,
            });
        }
    }
    Ok(prog_id)
}

/// An exclusive `flock` of netmit's bpffs root, held across an attach or detach, so that
/// the CLI and a daemon changing the same interface at the same moment take turns
/// instead of racing on its pins. The kernel drops the lock when the process dies.
struct PinsLock(#[allow(dead_code)] fs::File);

impl PinsLock {
    fn acquire() -> Result<Self, AttachError> {
        let root = std::path::Path::new(super::pins::BPFFS_ROOT);
        let err = |what: &'static str| {
            move |source| AttachError::Pins {
                what,
                path: root.display().to_string(),
                source,
            }
        };
        fs::create_dir_all(root).map_err(err("creating"))?;
        let dir = fs::File::open(root).map_err(err("opening"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&dir), libc::LOCK_EX) } != 0 {
            return Err(err("locking")(io::Error::last_os_error()));
        }
        Ok(Self(dir))
    }
}
