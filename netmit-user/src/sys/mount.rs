//! Mounts: the few calls netmit and its tests make on the mount table (tracefs for the
//! NAPI tracepoints, a thread's own view of `/sys` for a network namespace, the type of
//! the filesystem under a path).

use std::{ffi::CString, io, path::Path};

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// mount(2) of `src` on `target` with filesystem type `fstype` (`None` for a change of
/// propagation such as `MS_REC | MS_SLAVE`) and `flags`, without data.
///
/// # Errors
/// mount(2)'s error; `InvalidInput` for a string with a NUL byte.
pub fn mount(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let src = CString::new(src).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let target = c_path(target)?;
    let fstype = fstype
        .map(CString::new)
        .transpose()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated strings (or NULL for the type); no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// umount(2) of `target` (not lazily: an error if it is busy).
///
/// # Errors
/// umount2(2)'s error.
pub fn unmount(target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `f_type` magic of the filesystem under `path` (statfs(2)).
///
/// # Errors
/// statfs(2)'s error.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let c = c_path(path)?;
    // SAFETY: statfs is plain data; all-zero is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Gives the calling thread a mount namespace of its own (`unshare(CLONE_NEWNS)`, which
/// also unshares its root and working directory from the rest of the process). Mounts
/// made afterwards on this thread are not seen by the other threads; call it on a thread
/// that ends when the work is done.
///
/// # Errors
/// unshare(2)'s error (`EPERM` without CAP_SYS_ADMIN).
pub fn unshare_thread_mounts() -> io::Result<()> {
    // SAFETY: unshare only changes the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_procfs() {
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        assert_eq!(fs_type(Path::new("/proc")).unwrap(), PROC_SUPER_MAGIC);
        assert!(fs_type(Path::new("/no/such/path")).is_err());
        assert!(mount("x\0y", Path::new("/"), None, 0).is_err());
    }
}
