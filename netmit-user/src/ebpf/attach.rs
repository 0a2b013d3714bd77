//! Attaching the steering program to an interface and detaching it.
//!
//! Attachment uses a bpf_link pinned in bpffs, so it outlives the command and every later
//! command finds it (see [`super::pins`]). Every check runs before anything is changed;
//! a failure after the first change rolls back what was done.

use std::io;

use aya::programs::{ProgramError, Xdp, XdpMode, links::FdLink};
use netmit_common::{AttachMode, names};

use super::{
    load_object,
    pins::{PinError, PinLayout, PinRoot},
    tables::{SteerTables, TableError},
};
use crate::{
    steer::Rule,
    sys::{
        Netdev, NetdevError,
        bpf::{self, BpfError},
        link::{self, LinkError, XdpAttached},
    },
};

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
    /// The program's log level (off by default; see [`super::log`]).
    pub log: super::LogLevel,
}

/// A successful attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The device.
    pub dev: Netdev,
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
    /// The pin root or the namespace's directory is missing, untrusted or unusable.
    #[error(transparent)]
    Pins(#[from] PinError),
    /// The device is gone or in another namespace.
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    /// rtnetlink failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A bpf(2) command failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// netmit is already attached.
    #[error(
        "netmit is already attached to {iface} (program {prog_id}); change rules with \
         `netmit steer add|del {iface}` or run `netmit detach {iface}` first"
    )]
    AlreadyAttached {
        /// Interface name.
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
    #[error(
        "netmit is not attached to {iface}{note}; nothing to detach (see `netmit status` for \
         what is attached)"
    )]
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
    /// Pinning or removing a pin failed.
    #[error("{what} {path}")]
    Pin {
        /// The step.
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The foreign program could not be removed.
    #[error("the kernel still reports an XDP program on {iface} 2 s after removing it")]
    ForeignStays {
        /// Interface name.
        iface: String,
    },
}

/// Loads the steering program, attaches it to `dev` and pins it under `root`.
///
/// # Errors
///
/// Fails without changing anything if the caller lacks privileges, the device is gone,
/// the pin directories are untrusted, netmit or (without `force`) another program is
/// attached, or there are too many rules. A failure after the pin directory was created
/// removes it again.
pub fn attach(
    root: &PinRoot,
    dev: &Netdev,
    opts: &AttachOptions,
) -> Result<Attachment, AttachError> {
    if !bpf::has_bpf_privileges() {
        return Err(AttachError::NotPermitted("netmit attach"));
    }
    dev.check_here()?;
    let iface = dev.name.as_str();
    let _lock = root.lock(&dev.netns)?;
    if let Some(layout) = root.find(dev)? {
        let prog_id = bpf::pinned_link_info(&layout.link())
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
    let foreign = link::xdp_state(dev)?;
    if let Some(state) = foreign
        && !opts.force
    {
        return Err(AttachError::Foreign {
            iface: iface.into(),
            prog_id: state.prog_id,
            name: bpf::program_name(state.prog_id).unwrap_or_else(|| "?".into()),
            mode: state.attached,
        });
    }

    let mut ebpf = load_object(false, opts.log)?;
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
            remove_foreign(dev, state)?;
            Some(state.prog_id)
        }
        None => None,
    };
    let layout = root.layout(dev);
    // A directory without a link is the leftover of an interrupted attach; it is removed
    // only if it holds nothing but netmit's pins.
    root.remove(&layout)?;
    std::fs::create_dir(layout.dir()).map_err(|source| AttachError::Pin {
        what: "creating",
        path: layout.dir().display().to_string(),
        source,
    })?;

    let result = attach_pinned(&mut ebpf, dev, &layout, opts);
    if result.is_err() {
        let _ = root.remove(&layout);
    }
    let (mode, prog_id, rule_ids, native_error) = result?;
    Ok(Attachment {
        dev: dev.clone(),
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
    dev: &Netdev,
    layout: &PinLayout,
    opts: &AttachOptions,
) -> Result<Attached, AttachError> {
    let (iface, ifindex) = (dev.name.as_str(), dev.ifindex);
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
                fd_link.pin(layout.link()).map_err(|e| AttachError::Pin {
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

fn remove_foreign(dev: &Netdev, state: link::XdpState) -> Result<(), AttachError> {
    // Link info carries an ifindex but no network namespace, and ifindexes repeat across
    // namespaces: the link must also run the program that rtnetlink reports for this very
    // device, or it may be another namespace's attachment.
    match bpf::xdp_link_of(dev.ifindex, state.prog_id)? {
        Some(l) => bpf::detach_link_id(l.id)?,
        None => link::netlink_detach(dev, state.attached)?,
    }
    // Confirm the interface is free before attaching (a removal that did not take
    // effect would otherwise surface as an EBUSY from bpf_link_create).
    for _ in 0..40 {
        if link::xdp_state(dev)?.is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(AttachError::ForeignStays {
        iface: dev.name.to_string(),
    })
}

/// Detaches netmit from `dev` and removes its pins.
///
/// The link is detached explicitly (`BPF_LINK_DETACH`), so the program leaves the
/// interface even if another process still holds the link open.
///
/// # Errors
///
/// [`AttachError::NotAttached`] (changing nothing) when netmit has no pins for `dev`.
pub fn detach(root: &PinRoot, dev: &Netdev) -> Result<Option<u32>, AttachError> {
    dev.check_here()?;
    let iface = dev.name.as_str();
    let privileged = bpf::has_bpf_privileges();
    if !privileged {
        return Err(AttachError::NotPermitted("netmit detach"));
    }
    let _lock = if root.check(&dev.netns)? {
        Some(root.lock(&dev.netns)?)
    } else {
        None
    };
    let Some(layout) = root.find(dev)? else {
        let note = match link::xdp_state(dev).ok().flatten() {
            Some(s) => format!(
                " (it has an XDP program netmit did not attach, id {}; netmit leaves it alone)",
                s.prog_id
            ),
            None => String::new(),
        };
        // Leftover of an interrupted attach: tidy it (only if it is netmit's), but still
        // report "not attached".
        let _ = root.remove(&root.layout(dev));
        return Err(AttachError::NotAttached {
            iface: iface.into(),
            note,
        });
    };
    let link_fd = bpf::obj_get(&layout.link())?;
    let prog_id = bpf::link_info(&link_fd).ok().map(|l| l.prog_id);
    // A link whose interface disappeared is already defunct; detaching it is a no-op.
    match bpf::detach_link_fd(&link_fd) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(e.into()),
    }
    root.remove(&layout)?;
    root.tidy(&dev.netns);
    Ok(prog_id)
}
