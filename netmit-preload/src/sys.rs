//! The few system calls the library makes itself, each wrapped once with its SAFETY
//! argument: resolving and calling the real libc functions, errno, the ioctl and socket
//! options, `fstat`, the state file's atomic replacement, the fork and exit handlers, and
//! writing a line to stderr without std's locks (which a `fork` in another thread could
//! leave held in the child). The exported `extern "C"` functions in lib.rs are the only
//! other `unsafe` code: they are the C interface itself.

use std::{
    ffi::{CStr, CString, c_int, c_void},
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
};

/// `SO_BUSY_POLL` (`asm-generic/socket.h`).
pub const SO_BUSY_POLL: c_int = 46;
/// `SO_INCOMING_NAPI_ID`.
pub const SO_INCOMING_NAPI_ID: c_int = 56;
/// `SO_PREFER_BUSY_POLL` (Linux 5.11).
pub const SO_PREFER_BUSY_POLL: c_int = 69;
/// `SO_BUSY_POLL_BUDGET` (Linux 5.11).
pub const SO_BUSY_POLL_BUDGET: c_int = 70;

/// `EPIOCSPARAMS`: `_IOW(0x8A, 0x01, struct epoll_params)` (`linux/eventpoll.h`, 6.9).
pub const EPIOCSPARAMS: libc::c_ulong = 0x4008_8a01;

/// `struct epoll_params` of `linux/eventpoll.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EpollParams {
    /// µs to busy-poll when no event is ready.
    pub busy_poll_usecs: u32,
    /// Packets per poll round.
    pub busy_poll_budget: u16,
    /// 0 or 1.
    pub prefer_busy_poll: u8,
    /// Must be zero.
    pub pad: u8,
}

/// The signature of `epoll_create` (and of `epoll_create1`).
pub type CreateFn = unsafe extern "C" fn(c_int) -> c_int;
/// The signature of `epoll_ctl`.
pub type CtlFn = unsafe extern "C" fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int;

/// libc's `epoll_create`.
pub static EPOLL_CREATE: RealCreate = RealCreate(Real::new(c"epoll_create"));
/// libc's `epoll_create1`.
pub static EPOLL_CREATE1: RealCreate = RealCreate(Real::new(c"epoll_create1"));
/// libc's `epoll_ctl`.
pub static EPOLL_CTL: RealCtl = RealCtl(Real::new(c"epoll_ctl"));

/// A real function of the [`CreateFn`] signature (only the two statics above exist).
pub struct RealCreate(Real);

impl RealCreate {
    /// Resolves it now (the constructor does, so that the first call finds it ready).
    pub fn resolve(&self) -> bool {
        self.0.addr().is_some()
    }

    /// Calls it with `arg`; `None` if libc has no such function.
    pub fn call(&self, arg: c_int) -> Option<c_int> {
        let addr = self.0.addr()?;
        // SAFETY: `addr` is libc's epoll_create or epoll_create1 (the only two values
        // of this type), both `int f(int)`, with no memory-safety preconditions.
        let real = unsafe { std::mem::transmute::<usize, CreateFn>(addr) };
        // SAFETY: as above.
        Some(unsafe { real(arg) })
    }
}

/// libc's `epoll_ctl` (only the static above exists).
pub struct RealCtl(Real);

impl RealCtl {
    /// Resolves it now.
    pub fn resolve(&self) -> bool {
        self.0.addr().is_some()
    }

    /// Calls it; `None` if libc has no such function.
    ///
    /// # Safety
    ///
    /// As `epoll_ctl(2)`: `event` is valid for the operation (or null where allowed).
    pub unsafe fn call(
        &self,
        epfd: c_int,
        op: c_int,
        fd: c_int,
        event: *mut libc::epoll_event,
    ) -> Option<c_int> {
        let addr = self.0.addr()?;
        // SAFETY: `addr` is libc's epoll_ctl, of the CtlFn signature.
        let real = unsafe { std::mem::transmute::<usize, CtlFn>(addr) };
        // SAFETY: the caller's arguments, as this function's contract requires.
        Some(unsafe { real(epfd, op, fd, event) })
    }
}

/// Registers the fork-child and exit handlers.
pub fn on_fork_child_and_exit(child: extern "C" fn(), exit: extern "C" fn()) {
    // SAFETY: both are plain functions; registering them has no other precondition.
    unsafe {
        libc::pthread_atfork(None, None, Some(child));
        libc::atexit(exit);
    }
}

/// A descriptor this module opened, closed once when dropped.
struct Fd(c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd was opened here and is closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Replaces `<dir>/<name>` with `bytes`, through `<dir>/<tmp>` and a rename, where `dir`
/// is a real directory (not a symlink) owned by root or this user and writable by no one
/// else; the errno on failure (`EPERM` for an untrusted directory).
pub fn replace_in_trusted_dir(
    dir: &Path,
    name: &str,
    tmp: &str,
    bytes: &[u8],
) -> Result<(), c_int> {
    let c = |s: &[u8]| CString::new(s).map_err(|_| libc::EINVAL);
    let (path, name, tmp) = (
        c(dir.as_os_str().as_bytes())?,
        c(name.as_bytes())?,
        c(tmp.as_bytes())?,
    );
    // SAFETY: a valid C string; O_NOFOLLOW refuses a symlink at the last component.
    let d = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if d < 0 {
        return Err(errno());
    }
    let d = Fd(d);
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes.
    if unsafe { libc::fstat(d.0, &mut st) } != 0 {
        return Err(errno());
    }
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    if (st.st_uid != 0 && st.st_uid != euid) || st.st_mode & 0o022 != 0 {
        return Err(libc::EPERM);
    }
    // SAFETY: valid C strings relative to an open directory fd; a stale temporary of an
    // earlier process is removed (unlinkat never follows a symlink).
    unsafe { libc::unlinkat(d.0, tmp.as_ptr(), 0) };
    // SAFETY: as above; O_EXCL|O_NOFOLLOW create a fresh file or fail.
    let f = unsafe {
        libc::openat(
            d.0,
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if f < 0 {
        return Err(errno());
    }
    let f = Fd(f);
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::write(f.0, bytes.as_ptr().cast(), bytes.len()) };
    if n != bytes.len() as isize {
        let e = if n < 0 { errno() } else { libc::EIO };
        // SAFETY: as above.
        unsafe { libc::unlinkat(d.0, tmp.as_ptr(), 0) };
        return Err(e);
    }
    drop(f);
    // SAFETY: both names are relative to the same open directory.
    if unsafe { libc::renameat(d.0, tmp.as_ptr(), d.0, name.as_ptr()) } != 0 {
        let e = errno();
        // SAFETY: as above.
        unsafe { libc::unlinkat(d.0, tmp.as_ptr(), 0) };
        return Err(e);
    }
    Ok(())
}

/// unlink(2) of `path` (never follows a symlink); errors are ignored.
pub fn unlink(path: &Path) {
    if let Ok(path) = CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: a valid C string.
        unsafe { libc::unlink(path.as_ptr()) };
    }
}

/// A libc function found with `dlsym(RTLD_NEXT, name)`, cached.
struct Real {
    name: &'static CStr,
    addr: AtomicUsize,
}

impl Real {
    /// The function `name` of the next object in the lookup order (libc).
    const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// Its address, looked up on first use (normally in the constructor).
    fn addr(&self) -> Option<usize> {
        match self.addr.load(Ordering::Acquire) {
            0 => {
                // SAFETY: `name` is a NUL-terminated string; RTLD_NEXT asks for the next
                // definition after this library, which is libc's, never ours.
                let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
                if p.is_null() {
                    return None;
                }
                self.addr.store(p as usize, Ordering::Release);
                Some(p as usize)
            }
            a => Some(a),
        }
    }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns the calling thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set_errno(v: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v }
}

/// `ioctl(epfd, EPIOCSPARAMS, p)`: Ok, or the errno.
pub fn set_epoll_params(epfd: c_int, p: &EpollParams) -> Result<(), c_int> {
    // SAFETY: `p` points to a valid struct epoll_params that outlives the call; the
    // kernel only reads it. An fd that is not an epoll instance fails with an errno.
    let rc = unsafe { libc::ioctl(epfd, EPIOCSPARAMS, p as *const EpollParams) };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// `setsockopt(fd, SOL_SOCKET, opt, &v)`: Ok, or the errno.
pub fn setsockopt_int(fd: c_int, opt: c_int, v: c_int) -> Result<(), c_int> {
    // SAFETY: a pointer to an int of the given length; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &v as *const c_int as *const c_void,
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// `getsockopt(fd, SOL_SOCKET, opt)` as an unsigned int.
pub fn getsockopt_u32(fd: c_int, opt: c_int) -> Option<u32> {
    let mut v: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the given size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut v as *mut u32 as *mut c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// The inode of `fd` if it is a socket.
pub fn socket_inode(fd: c_int) -> Option<u64> {
    // SAFETY: an all-zero stat is valid; fstat writes into it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// Writes `msg` and a newline to stderr with one `write` (no std lock, no allocation
/// beyond the caller's string). Errors are ignored: stderr may be closed.
pub fn say(msg: &str) {
    let mut line = Vec::with_capacity(msg.len() + 1);
    line.extend_from_slice(msg.as_bytes());
    line.push(b'\n');
    // SAFETY: the buffer is valid for `line.len()` bytes.
    let _ = unsafe { libc::write(2, line.as_ptr() as *const c_void, line.len()) };
}

/// The process id.
pub fn getpid() -> i32 {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

/// Runs `f` with every signal blocked in the calling thread, so that a thread it spawns
/// starts with all signals blocked and never takes one meant for the application.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data; sigfillset initialises it; pthread_sigmask only
    // changes the calling thread's mask, and the old mask is put back below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let out = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        out
    }
}
