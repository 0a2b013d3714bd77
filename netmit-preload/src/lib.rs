//! `libnetmit_preload.so`: busy polling and IRQ suspension for epoll servers that were
//! not written for them (memcached, redis, nginx as shipped), loaded with `LD_PRELOAD`
//! (`netmit run` does it and finds the library next to its binary).
//!
//! # What it does
//!
//! It defines `epoll_create`, `epoll_create1` and `epoll_ctl`, which the dynamic linker
//! binds ahead of libc's. Each calls the real function (found with
//! `dlsym(RTLD_NEXT, ...)`) and returns its result and errno unchanged; around a
//! successful call it does its own work and restores errno afterwards:
//!
//! - a new epoll instance gets `busy_poll_usecs`, `busy_poll_budget` and
//!   `prefer_busy_poll` with `ioctl(EPIOCSPARAMS)` (Linux 6.9). Its `epoll_wait` then polls
//!   the device queue of its sockets in the application's thread before sleeping, and with
//!   the NAPI's `irq-suspend-timeout` set (`netmit run --profile suspend`) the device's
//!   interrupts stay suspended while the application finds work (Linux 6.13);
//! - a socket added with `EPOLL_CTL_ADD` is remembered (fd and inode), so that a reporter
//!   thread can read which NAPI instance served it (`SO_INCOMING_NAPI_ID`) and export the
//!   epoll sets whose sockets span several NAPIs: epoll busy-polls one NAPI per set, so
//!   such a set busy-polls only one of its queues ([`report`]).
//!
//! `epoll_wait`, `epoll_pwait` and the rest are not interposed at all: the hot path of the
//! application runs exactly as before, with no extra instruction, allocation or lock.
//!
//! On a kernel without `EPIOCSPARAMS` (`ENOTTY`), it says so once on stderr and, in the
//! default `auto` mode, sets `SO_BUSY_POLL`, `SO_PREFER_BUSY_POLL` and
//! `SO_BUSY_POLL_BUDGET` on every socket added to an epoll set instead (they make blocking
//! reads of that socket busy-poll; `epoll_wait` itself then does not). The configuration
//! is read from the environment once, when the library is loaded ([`config`]); a bad value
//! is one line on stderr, and the library then only passes calls through.
//!
//! # Safety
//!
//! This crate is FFI by nature: the exported functions are `unsafe extern "C"` with the
//! C signatures of the functions they stand in for, and every system call goes through
//! [`sys`], where each `unsafe` block carries its SAFETY argument. Shared state is
//! atomics only ([`table`]), so no lock can be held across a `fork` and a child starts
//! consistent; its reporter thread is started anew in the child (`pthread_atfork`).
//!
//! # Limits
//!
//! Statically linked programs, programs that issue the `epoll_create1` system call
//! directly, and io_uring-based servers are not reached by `LD_PRELOAD`. An application
//! that sets its own epoll parameters afterwards wins (its ioctl comes later). Sockets
//! with fd numbers of 8192 and above, and sets beyond 1024, are served but not reported.

pub mod config;
pub mod report;
pub mod sys;
pub mod table;

use std::{
    ffi::c_int,
    path::PathBuf,
    sync::{
        OnceLock,
        atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering},
    },
};

use config::{Config, Mode};
use sys::{EPOLL_CREATE, EPOLL_CREATE1, EPOLL_CTL, EpollParams};
use table::TABLES;

/// The configuration, read once; `None` when a value was bad (the library is then off).
static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
/// The state file directory, kept for the lifetime of the process (the reporter thread
/// and the exit handler borrow it).
static STATE_DIR: OnceLock<Option<PathBuf>> = OnceLock::new();

/// What the library does to new epoll sets and sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mechanism {
    /// Not probed yet.
    Undecided = 0,
    /// `EPIOCSPARAMS` on each epoll instance.
    EpollParams = 1,
    /// Socket options on each socket added to an epoll set.
    SocketOptions = 2,
    /// Nothing.
    Off = 3,
}

static MECHANISM: AtomicU8 = AtomicU8::new(Mechanism::Undecided as u8);
/// The budget in use (lowered to 64 once when the kernel refuses more without
/// CAP_NET_ADMIN).
static BUDGET: AtomicU16 = AtomicU16::new(config::DEFAULT_BUDGET);
/// Bits of the notices already printed.
static SAID: AtomicU32 = AtomicU32::new(0);

const SAID_FALLBACK: u32 = 1;
const SAID_BUDGET: u32 = 2;
const SAID_REFUSED: u32 = 4;
const SAID_SOCKOPT: u32 = 8;

fn mechanism() -> Mechanism {
    match MECHANISM.load(Ordering::Acquire) {
        1 => Mechanism::EpollParams,
        2 => Mechanism::SocketOptions,
        3 => Mechanism::Off,
        _ => Mechanism::Undecided,
    }
}

fn set_mechanism(m: Mechanism) {
    MECHANISM.store(m as u8, Ordering::Release);
}

fn say_once(bit: u32, msg: impl FnOnce() -> String) {
    if SAID.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
        sys::say(&msg());
    }
}

/// Reads the configuration (once) and resolves the real functions.
fn init() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            EPOLL_CREATE.resolve();
            EPOLL_CREATE1.resolve();
            EPOLL_CTL.resolve();
            match Config::from_vars(|k| std::env::var(k).ok()) {
                Ok(c) => {
                    BUDGET.store(c.budget, Ordering::Release);
                    match c.mode {
                        Mode::Off => set_mechanism(Mechanism::Off),
                        Mode::Socket => set_mechanism(Mechanism::SocketOptions),
                        Mode::Auto | Mode::Epoll => {}
                    }
                    Some(c)
                }
                Err(line) => {
                    sys::say(&line);
                    set_mechanism(Mechanism::Off);
                    None
                }
            }
        })
        .as_ref()
}

fn settings() -> (&'static str, u32, u16, u8) {
    let name = match mechanism() {
        Mechanism::Undecided => "undecided",
        Mechanism::EpollParams => "epoll-params",
        Mechanism::SocketOptions => "socket-options",
        Mechanism::Off => "off",
    };
    let c = CONFIG.get().and_then(Option::as_ref);
    (
        name,
        c.map_or(0, |c| c.usecs),
        BUDGET.load(Ordering::Acquire),
        c.map_or(0, |c| c.prefer),
    )
}

fn start_reporter() {
    let dir = STATE_DIR.get_or_init(|| CONFIG.get().and_then(Option::as_ref)?.state_dir.clone());
    if let Some(dir) = dir {
        report::ensure_started(dir.as_path(), settings);
    }
}

/// Configures a new epoll instance.
fn on_new_set(epfd: c_int) {
    let Some(cfg) = init() else { return };
    if mechanism() == Mechanism::Off {
        return;
    }
    if matches!(mechanism(), Mechanism::Undecided | Mechanism::EpollParams) {
        let mut p = EpollParams {
            busy_poll_usecs: cfg.usecs,
            busy_poll_budget: BUDGET.load(Ordering::Acquire),
            prefer_busy_poll: cfg.prefer,
            pad: 0,
        };
        match sys::set_epoll_params(epfd, &p) {
            Ok(()) => set_mechanism(Mechanism::EpollParams),
            Err(libc::EPERM) if p.busy_poll_budget > config::DEFAULT_BUDGET => {
                say_once(SAID_BUDGET, || {
                    format!(
                        "netmit-preload: a busy-poll budget of {} needs CAP_NET_ADMIN; using {}",
                        p.busy_poll_budget,
                        config::DEFAULT_BUDGET
                    )
                });
                BUDGET.store(config::DEFAULT_BUDGET, Ordering::Release);
                p.busy_poll_budget = config::DEFAULT_BUDGET;
                if sys::set_epoll_params(epfd, &p).is_ok() {
                    set_mechanism(Mechanism::EpollParams);
                }
            }
            Err(libc::ENOTTY) if cfg.mode == Mode::Auto => {
                say_once(SAID_FALLBACK, || {
                    "netmit-preload: this kernel has no EPIOCSPARAMS (Linux 6.9+); setting \
                     SO_BUSY_POLL/SO_PREFER_BUSY_POLL on each socket added to an epoll set \
                     instead (blocking reads busy-poll, epoll_wait does not)"
                        .into()
                });
                set_mechanism(Mechanism::SocketOptions);
            }
            Err(e) => {
                say_once(SAID_REFUSED, || {
                    format!(
                        "netmit-preload: the kernel refused EPIOCSPARAMS ({}); busy polling \
                         stays off for this process",
                        std::io::Error::from_raw_os_error(e)
                    )
                });
                set_mechanism(Mechanism::Off);
                return;
            }
        }
    }
    TABLES.add_set(epfd);
    start_reporter();
}

/// Notes a socket added to (or removed from) an epoll set.
fn on_ctl(epfd: c_int, op: c_int, fd: c_int) {
    let Some(cfg) = init() else { return };
    let m = mechanism();
    if m == Mechanism::Off {
        return;
    }
    match op {
        libc::EPOLL_CTL_ADD => {
            let Some(ino) = sys::socket_inode(fd) else {
                return;
            };
            TABLES.add_member(epfd, fd, ino);
            if m == Mechanism::SocketOptions {
                let budget = c_int::from(BUDGET.load(Ordering::Acquire));
                let results = [
                    sys::setsockopt_int(fd, sys::SO_BUSY_POLL, cfg.usecs as c_int),
                    sys::setsockopt_int(fd, sys::SO_PREFER_BUSY_POLL, cfg.prefer.into()),
                    sys::setsockopt_int(fd, sys::SO_BUSY_POLL_BUDGET, budget),
                ];
                if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                    say_once(SAID_SOCKOPT, || {
                        format!(
                            "netmit-preload: a busy-poll socket option was refused ({}; they \
                             need CAP_NET_ADMIN); such sockets do not busy-poll",
                            std::io::Error::from_raw_os_error(e)
                        )
                    });
                }
            }
            start_reporter();
        }
        libc::EPOLL_CTL_DEL => TABLES.remove_member(epfd, fd),
        _ => {}
    }
}

fn enosys() -> c_int {
    sys::set_errno(libc::ENOSYS);
    -1
}

/// `epoll_create(2)`, with busy polling set on the new instance.
///
/// # Safety
///
/// As the libc function: none beyond a valid `size` argument.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    let Some(fd) = EPOLL_CREATE.call(size) else {
        return enosys();
    };
    if fd >= 0 {
        let saved = sys::errno();
        on_new_set(fd);
        sys::set_errno(saved);
    }
    fd
}

/// `epoll_create1(2)`, with busy polling set on the new instance.
///
/// # Safety
///
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    let Some(fd) = EPOLL_CREATE1.call(flags) else {
        return enosys();
    };
    if fd >= 0 {
        let saved = sys::errno();
        on_new_set(fd);
        sys::set_errno(saved);
    }
    fd
}

/// `epoll_ctl(2)`, noting the sockets of each set.
///
/// # Safety
///
/// As the libc function: `event` must be valid for the operation (the kernel checks it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged (this function's contract is
    // epoll_ctl's).
    let Some(rc) = (unsafe { EPOLL_CTL.call(epfd, op, fd, event) }) else {
        return enosys();
    };
    if rc == 0 {
        let saved = sys::errno();
        on_ctl(epfd, op, fd);
        sys::set_errno(saved);
    }
    rc
}

extern "C" fn at_fork_child() {
    report::forget_reporter();
}

extern "C" fn at_exit() {
    if let Some(Some(dir)) = STATE_DIR.get() {
        report::remove_own_file(dir);
    }
}

/// Runs when the library is loaded: validates the configuration (a bad value is said now,
/// once) and registers the fork and exit handlers.
extern "C" fn load() {
    if init().is_some() {
        // Both handlers only touch atomics (and, at exit, unlink one file).
        sys::on_fork_child_and_exit(at_fork_child, at_exit);
    }
}

// The constructor: the loader calls every pointer in .init_array when the library is
// loaded, before the program's main.
#[used]
#[unsafe(link_section = ".init_array")]
static LOAD: extern "C" fn() = load;
