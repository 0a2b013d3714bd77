//! The bpf(2) commands aya 0.14 does not expose (opening a pin, link info with the XDP
//! ifindex, link enumeration, forced link detach), whether this process may use BPF, and
//! the bpffs and memlock facts loading depends on.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

/// Errors of bpf(2) commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// A bpf(2) command failed.
    #[error("bpf({cmd})")]
    Command {
        /// Command name.
        cmd: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl BpfError {
    /// The errno of the failed command.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            BpfError::Command { source, .. } => source.raw_os_error(),
        }
    }
}

// bpf(2) commands from include/uapi/linux/bpf.h.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u64 = 37;
/// XDP_FLAGS_SKB_MODE (include/uapi/linux/if_link.h).
const XDP_FLAGS_SKB_MODE: u64 = 1 << 1;

fn sys_bpf(cmd: libc::c_long, attr: &mut [u64; 16], name: &'static str) -> Result<i64, BpfError> {
    // SAFETY: `attr` is a zero-initialised, 128-byte `union bpf_attr` for `cmd`.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
    if ret < 0 {
        Err(BpfError::Command {
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

/// `BPF_LINK_CREATE` of the XDP program `prog` on `ifindex` of the calling thread's
/// namespace, in generic (skb) mode when `generic`. aya attaches through its own types;
/// this is for a program fd that nothing else manages (the generator's dispatcher pin).
///
/// # Errors
///
/// [`BpfError::Command`] with the kernel's errno.
pub fn xdp_link_create(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
    generic: bool,
) -> Result<OwnedFd, BpfError> {
    // union bpf_attr, link_create: u32 prog_fd, u32 target_ifindex, u32 attach_type,
    // u32 flags, then zeroes (little-endian pairs in u64 words).
    let mut attr = [0u64; 16];
    attr[0] = u64::from(prog.as_raw_fd() as u32) | (u64::from(ifindex) << 32);
    let flags = if generic { XDP_FLAGS_SKB_MODE } else { 0 };
    attr[1] = BPF_XDP | (flags << 32);
    sys_bpf(BPF_LINK_CREATE, &mut attr, "BPF_LINK_CREATE").map(owned)
}

/// Reads every element of an array map in one `BPF_MAP_LOOKUP_BATCH` (Linux 5.6), where
/// element-by-element lookups cost one system call each: the daemon reads its 256-entry
/// per-queue counters every tick. `value_size` is the size of one element as the kernel
/// copies it out (for per-CPU maps: `round_up(value_size, 8) * possible CPUs`). Returns
/// the values of elements 0..n in order (n = the map's entries, at most `max_entries`).
///
/// # Errors
///
/// [`BpfError::Command`] with the kernel's errno (EINVAL or ENOTSUPP where the kernel or
/// map type has no batch operations: callers fall back to single lookups).
pub fn array_lookup_batch(
    map: std::os::fd::BorrowedFd<'_>,
    max_entries: u32,
    value_size: usize,
) -> Result<Vec<u8>, BpfError> {
    let n = max_entries as usize;
    let mut keys = vec![0u32; n];
    let mut values = vec![0u8; n * value_size];
    let mut out_batch = 0u32;
    // union bpf_attr, batch: u64 in_batch, u64 out_batch, u64 keys, u64 values,
    // u32 count, u32 map_fd, u64 elem_flags, u64 flags. in_batch NULL starts at the first
    // element; array batches are keyed by the (u32) index.
    let mut attr = [0u64; 16];
    attr[1] = std::ptr::from_mut(&mut out_batch) as u64;
    attr[2] = keys.as_mut_ptr() as u64;
    attr[3] = values.as_mut_ptr() as u64;
    attr[4] = u64::from(max_entries) | (u64::from(map.as_raw_fd() as u32) << 32);
    match sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr, "BPF_MAP_LOOKUP_BATCH") {
        Ok(_) => {}
        // ENOENT: the batch reached the end of the map (every element read).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let count = (attr[4] & 0xffff_ffff) as usize;
    // The kernel fills elements in index order; anything else is not an array map.
    if count > n
        || keys[..count]
            .iter()
            .enumerate()
            .any(|(i, k)| *k as usize != i)
    {
        return Err(BpfError::Command {
            cmd: "BPF_MAP_LOOKUP_BATCH",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    values.truncate(count * value_size);
    Ok(values)
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

/// Link id, program id and (for XDP links) ifindex of the link behind `fd`. The ifindex
/// is 0 once the link is defunct (its device went away, or it was detached).
pub fn link_info(fd: &OwnedFd) -> Result<LinkInfo, BpfError> {
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
pub fn obj_get(path: &std::path::Path) -> Result<OwnedFd, BpfError> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| BpfError::Command {
        cmd: "OBJ_GET",
        source: io::ErrorKind::InvalidInput.into(),
    })?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    sys_bpf(BPF_OBJ_GET, &mut attr, "OBJ_GET").map(owned)
}

/// Information about a pinned link.
pub fn pinned_link_info(path: &std::path::Path) -> Result<LinkInfo, BpfError> {
    link_info(&obj_get(path)?)
}

/// The XDP bpf_link attached to `ifindex` that runs program `prog_id`, if any. Both must
/// match: link info has no network namespace, and ifindexes repeat across namespaces.
pub fn xdp_link_of(ifindex: u32, prog_id: u32) -> Result<Option<LinkInfo>, BpfError> {
    let mut id = 0u32;
    loop {
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        match sys_bpf(BPF_LINK_GET_NEXT_ID, &mut attr, "LINK_GET_NEXT_ID") {
            Ok(_) => {}
            Err(BpfError::Command { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
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
pub fn detach_link_id(id: u32) -> Result<(), BpfError> {
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
pub fn detach_link_fd(fd: &OwnedFd) -> Result<(), BpfError> {
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

/// Whether this process may load and attach BPF programs (see [`super::caps`]).
pub fn has_bpf_privileges() -> bool {
    super::caps::has_bpf_privileges()
}

/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Whether `path` is on a mounted bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
}

/// Raises `RLIMIT_MEMLOCK` to infinity where that is allowed. Kernels since 5.11 charge
/// BPF memory to the memory cgroup instead, so failing here only matters on old kernels.
pub fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system call with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels that charge BPF memory to the cgroup",
            io::Error::last_os_error()
        );
    }
}
