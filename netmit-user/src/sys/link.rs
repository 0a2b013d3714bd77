//! The kernel's own view of an interface's XDP state, and the few BPF commands aya 0.14
//! does not expose (link enumeration with the XDP ifindex, forced link detach).
//!
//! XDP state comes from rtnetlink (`IFLA_XDP`) through `netlink-bindings`, whose rt-link
//! family is generated from the kernel's YNL spec; that is the same view `ip -d link`
//! prints, and it sees programs attached both through netlink and through bpf_link.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use netlink_bindings::rt_link::{self, Ifinfomsg};
use netlink_socket2::NetlinkSocket;

/// Errors talking to the kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// No such interface in this network namespace.
    #[error("interface `{0}` does not exist in this network namespace (see `ip link`)")]
    NoSuchInterface(String),
    /// A netlink request failed.
    #[error("netlink {what} for interface index {ifindex}")]
    Netlink {
        /// The request.
        what: &'static str,
        /// Interface index.
        ifindex: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A bpf(2) command failed.
    #[error("bpf({cmd})")]
    Bpf {
        /// Command name.
        cmd: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// How an XDP program is attached, as `IFLA_XDP_ATTACHED` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttached {
    /// Native (driver) mode.
    Driver,
    /// Generic (skb) mode.
    Generic,
    /// Offloaded to the NIC.
    Hardware,
    /// Several programs in different modes.
    Multi,
}

/// The XDP program on an interface, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpState {
    /// Attachment mode.
    pub attached: XdpAttached,
    /// Program id (the first one reported in multi mode).
    pub prog_id: u32,
}

/// Resolves an interface name to its index.
pub fn ifindex(iface: &str) -> Result<u32, KernelError> {
    let c = CString::new(iface).map_err(|_| KernelError::NoSuchInterface(iface.to_string()))?;
    // SAFETY: valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(KernelError::NoSuchInterface(iface.to_string())),
        i => Ok(i),
    }
}

/// Reads `IFLA_XDP` of an interface.
pub fn xdp_state(ifindex: u32) -> Result<Option<XdpState>, KernelError> {
    let err = |source: io::Error| KernelError::Netlink {
        what: "getlink",
        ifindex,
        source,
    };
    let mut sock = NetlinkSocket::new();
    let header = Ifinfomsg {
        ifi_index: ifindex as i32,
        ..Ifinfomsg::new()
    };
    let request = rt_link::Request::new().op_getlink_do(&header);
    let mut replies = sock.request(&request).map_err(err)?;
    let (_, attrs) = replies
        .recv_one()
        .map_err(|e| err(e.as_io_error().kind().into()))?;
    let Ok(xdp) = attrs.get_xdp() else {
        return Ok(None);
    };
    let attached = match xdp.get_attached().unwrap_or(0) {
        1 => XdpAttached::Driver,
        2 => XdpAttached::Generic,
        3 => XdpAttached::Hardware,
        4 => XdpAttached::Multi,
        _ => return Ok(None),
    };
    let prog_id = xdp
        .get_prog_id()
        .or_else(|_| xdp.get_drv_prog_id())
        .or_else(|_| xdp.get_skb_prog_id())
        .unwrap_or(0);
    Ok(Some(XdpState { attached, prog_id }))
}

/// Removes a netlink-attached XDP program (what `ip link set dev X xdp off` does).
pub fn netlink_detach(ifindex: u32, attached: XdpAttached) -> Result<(), KernelError> {
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    let flags = match attached {
        XdpAttached::Generic => XDP_FLAGS_SKB_MODE,
        XdpAttached::Driver => XDP_FLAGS_DRV_MODE,
        _ => 0,
    };
    let err = |source: io::Error| KernelError::Netlink {
        what: "setlink xdp off",
        ifindex,
        source,
    };
    let mut sock = NetlinkSocket::new();
    let header = Ifinfomsg {
        ifi_index: ifindex as i32,
        ..Ifinfomsg::new()
    };
    let mut request = rt_link::Request::new().op_setlink_do(&header);
    request
        .encode()
        .nested_xdp()
        .push_fd(-1)
        .push_flags(flags)
        .end_nested();
    sock.request(&request)
        .map_err(err)?
        .recv_ack()
        .map_err(|e| err(e.as_io_error().kind().into()))?;
    Ok(())
}

// bpf(2) commands from include/uapi/linux/bpf.h.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_LINK_TYPE_XDP: u32 = 6;

fn sys_bpf(
    cmd: libc::c_long,
    attr: &mut [u64; 16],
    name: &'static str,
) -> Result<i64, KernelError> {
    // SAFETY: `attr` is a zero-initialised, 128-byte `union bpf_attr` for `cmd`.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
    if ret < 0 {
        Err(KernelError::Bpf {
            cmd: name,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Link id, program id and (for XDP links) ifindex of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Link id.
    pub id: u32,
    /// Link type (`BPF_LINK_TYPE_*`).
    pub link_type: u32,
    /// Attached program id.
    pub prog_id: u32,
    /// Interface index for XDP links.
    pub ifindex: u32,
}

fn link_info(fd: &OwnedFd) -> Result<LinkInfo, KernelError> {
    let mut info = [0u32; 32];
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u64 | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr, "OBJ_GET_INFO_BY_FD")?;
    // struct bpf_link_info: type, id, prog_id, then an 8-aligned union (xdp.ifindex first).
    Ok(LinkInfo {
        link_type: info[0],
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    })
}

/// Opens a pinned BPF object.
pub fn obj_get(path: &std::path::Path) -> Result<OwnedFd, KernelError> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| KernelError::Bpf {
        cmd: "OBJ_GET",
        source: io::ErrorKind::InvalidInput.into(),
    })?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    sys_bpf(BPF_OBJ_GET, &mut attr, "OBJ_GET").map(owned)
}

/// Information about a pinned link.
pub fn pinned_link_info(path: &std::path::Path) -> Result<LinkInfo, KernelError> {
    link_info(&obj_get(path)?)
}

/// The XDP bpf_link attached to `ifindex` that runs program `prog_id`, if any. Both must
/// match: link info has no network namespace, and ifindexes repeat across namespaces.
pub fn xdp_link_of(ifindex: u32, prog_id: u32) -> Result<Option<LinkInfo>, KernelError> {
    let mut id = 0u32;
    loop {
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        match sys_bpf(BPF_LINK_GET_NEXT_ID, &mut attr, "LINK_GET_NEXT_ID") {
            Ok(_) => {}
            Err(KernelError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        id = (attr[0] >> 32) as u32;
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        let fd = match sys_bpf(BPF_LINK_GET_FD_BY_ID, &mut attr, "LINK_GET_FD_BY_ID") {
            Ok(fd) => owned(fd),
            Err(_) => continue, // went away meanwhile
        };
        let info = link_info(&fd)?;
        if info.link_type == BPF_LINK_TYPE_XDP && info.ifindex == ifindex && info.prog_id == prog_id
        {
            return Ok(Some(info));
        }
    }
}

/// Forcibly detaches a link by id (even while other processes hold it open).
pub fn detach_link_id(id: u32) -> Result<(), KernelError> {
    let mut attr = [0u64; 16];
    attr[0] = id as u64;
    let fd = owned(sys_bpf(
        BPF_LINK_GET_FD_BY_ID,
        &mut attr,
        "LINK_GET_FD_BY_ID",
    )?);
    detach_link_fd(&fd)
}

/// Forcibly detaches the link behind `fd`.
pub fn detach_link_fd(fd: &OwnedFd) -> Result<(), KernelError> {
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u64;
    sys_bpf(BPF_LINK_DETACH, &mut attr, "LINK_DETACH").map(drop)
}

/// Name of a loaded program, if it can be read.
pub fn program_name(prog_id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
}

/// Whether this process may load and attach BPF programs: CAP_SYS_ADMIN, or CAP_BPF
/// together with CAP_NET_ADMIN, in the effective set.
pub fn has_bpf_privileges() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return false;
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN))
}
