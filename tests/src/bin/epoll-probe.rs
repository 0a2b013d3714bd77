//! A small epoll program for the preload tests (`tests/tests/preload.rs`).
//!
//! `epoll-probe calls`: makes succeeding and failing epoll calls and prints one line per
//! call with its result and errno (errno set to a sentinel before each call), the busy-poll
//! parameters of its epoll instances (`EPIOCGPARAMS`), and the same from a forked child.
//! Run with and without `libnetmit_preload.so`, every line but the parameters must match.
//!
//! `epoll-probe serve ADDR PORT... -- PORT...`: binds UDP sockets on ADDR, the ports before
//! `--` in one epoll set and those after it in a second, prints `ready`, and drains both
//! sets until a signal ends it.
//!
//! `epoll-probe send ADDR PORT`: one datagram from a fresh socket (run it under `taskset`
//! to choose the transmit queue through XPS).
//!
//! Unlike the rest of the tests, it calls libc's epoll functions directly, `unsafe` and
//! all: it has to make the very C calls an unmodified server makes (with errno set to a
//! sentinel first, and after `fork`) for the interposer to be observed; a safe wrapper
//! would hide exactly what is being tested.

#![allow(
    clippy::undocumented_unsafe_blocks,
    reason = "each call is a plain libc epoll, socket or fork call on values this program \
              owns, or one made invalid on purpose for the kernel to reject (see above)"
)]

use std::{io::BufRead, net::UdpSocket, os::fd::AsRawFd};

const EPIOCGPARAMS: libc::c_ulong = 0x8008_8a02;
const SENTINEL: i32 = 4242;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(v: i32) {
    // SAFETY: the calling thread's errno slot is always valid.
    unsafe { *libc::__errno_location() = v };
}

/// Runs `f` with errno at the sentinel and prints `name rc errno`.
fn call(name: &str, f: impl FnOnce() -> i32) -> i32 {
    set_errno(SENTINEL);
    let rc = f();
    let e = errno();
    let shown = if rc >= 0 && name.starts_with("create") {
        "fd".to_string()
    } else {
        rc.to_string()
    };
    println!("{name} {shown} {e}");
    rc
}

fn params(name: &str, epfd: i32) {
    let mut p = [0u8; 8];
    // SAFETY: EPIOCGPARAMS writes a struct epoll_params (8 bytes) into `p`.
    let rc = unsafe { libc::ioctl(epfd, EPIOCGPARAMS, p.as_mut_ptr()) };
    let usecs = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let budget = u16::from_ne_bytes([p[4], p[5]]);
    println!("params {name} {rc} {usecs} {budget} {}", p[6]);
}

fn calls() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let other = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let s = sock.as_raw_fd();
    let file = std::fs::File::open("/dev/null").expect("/dev/null");
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY (all calls below): plain epoll system calls on fds this function owns or on
    // deliberately invalid ones; `ev` and `events` outlive the calls.
    let ep = call("create1-cloexec", || unsafe {
        libc::epoll_create1(libc::EPOLL_CLOEXEC)
    });
    call("create1-badflags", || unsafe {
        libc::epoll_create1(0x7fff)
    });
    call("create-zero", || unsafe { libc::epoll_create(0) });
    let ep2 = call("create-one", || unsafe { libc::epoll_create(1) });
    call("ctl-add", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev)
    });
    call("ctl-add-again", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev)
    });
    call("ctl-mod", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, s, &mut ev)
    });
    call("ctl-del-absent", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, other.as_raw_fd(), &mut ev)
    });
    call("ctl-badfd", || unsafe {
        libc::epoll_ctl(-1, libc::EPOLL_CTL_ADD, s, &mut ev)
    });
    call("ctl-self", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ep, &mut ev)
    });
    call("ctl-regular-file", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, file.as_raw_fd(), &mut ev)
    });
    call("ctl-badop", || unsafe {
        libc::epoll_ctl(ep, 99, s, &mut ev)
    });
    call("ctl-del", || unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, s, std::ptr::null_mut())
    });
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    call("wait-empty", || unsafe {
        libc::epoll_wait(ep, events.as_mut_ptr(), 4, 0)
    });
    call("wait-badfd", || unsafe {
        libc::epoll_wait(-1, events.as_mut_ptr(), 4, 0)
    });
    params("create1", ep);
    params("create", ep2);
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    // SAFETY: fork in a single-threaded program; the child only makes system calls and
    // prints, then exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let c = call("child-create1", || unsafe { libc::epoll_create1(0) });
        params("child", c);
        std::io::stdout().flush().expect("flush");
        // SAFETY: ends the child without running the parent's exit handlers twice.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    println!("child-status {status}");
}

fn serve(args: &[String]) {
    let addr = &args[0];
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut sockets = Vec::new();
    let mut sets = Vec::new();
    for group in [&args[1..split], args.get(split + 1..).unwrap_or(&[])] {
        // SAFETY: creates an epoll instance.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            ep >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        for port in group {
            let s = UdpSocket::bind(format!("{addr}:{port}")).expect("bind");
            s.set_nonblocking(true).expect("nonblocking");
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: s.as_raw_fd() as u64,
            };
            // SAFETY: adds a socket this function owns to its epoll instance.
            let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
            assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
            sockets.push(s);
        }
        sets.push(ep);
    }
    println!("ready");
    let mut buf = [0u8; 2048];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    loop {
        for &ep in &sets {
            // SAFETY: `events` is valid for 8 entries.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 8, 10) };
            for e in events.iter().take(n.max(0) as usize) {
                let fd = e.u64 as i32;
                if let Some(s) = sockets.iter().find(|s| s.as_raw_fd() == fd) {
                    while s.recv(&mut buf).is_ok() {}
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("calls") => calls(),
        Some("serve") if args.len() >= 3 => serve(&args[1..]),
        Some("send") if args.len() == 3 => {
            let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
            s.send_to(b"x", format!("{}:{}", args[1], args[2]))
                .expect("send");
        }
        _ => {
            let _ = std::io::stdin().lock().lines().next();
            eprintln!(
                "usage: epoll-probe calls | serve ADDR PORT... [-- PORT...] | send ADDR PORT"
            );
            std::process::exit(2);
        }
    }
}
