//! AF_XDP sockets: receiving what netmit's `action=xsk` rules steer to a queue, and
//! sending, in batches.
//!
//! An [`XskSocket`] is one AF_XDP socket bound to one RX queue of one interface, with its
//! own UMEM and its four rings. [`XskSocket::register`] puts it into the XSKMAP that
//! `netmit attach` pinned for the interface, at its queue index; from then on the
//! steering program redirects that queue's `action=xsk` packets to it instead of counting
//! them as `xsk_fallback` and passing them to the kernel stack.
//!
//! ```no_run
//! use netmit_user::{sys::Netdev, xsk::{XskConfig, XskSocket}};
//! use std::time::Duration;
//!
//! // After `netmit attach eth1 --steer 'proto=udp,dport=9100,action=xsk'`:
//! let dev = Netdev::resolve(&"eth1".parse().unwrap()).unwrap();
//! let mut xsk = XskSocket::open_registered(&dev, 0, &XskConfig::default())?;
//! println!("bound in {} mode", xsk.bound_mode());
//! loop {
//!     if xsk.poll(Duration::from_millis(100))? {
//!         xsk.recv_batch(64, |frame| println!("{} bytes", frame.len()))?;
//!     }
//! }
//! # Ok::<(), netmit_user::xsk::XskError>(())
//! ```
//!
//! # Why the `xdp` crate, and where it is wrapped
//!
//! The rings, the UMEM and the socket set-up come from the [`xdp`] crate (0.8, MIT or
//! Apache-2.0 like netmit, no C and no dependencies; `xdpilone` is EUPL-1.2, a copyleft
//! licence that does not suit an MIT/Apache project). Checked against what netmit needs:
//!
//! | need | `xdp` 0.8 | here |
//! |---|---|---|
//! | frame size and count | 2048/4096-byte frames, any count | used as is |
//! | copy / zero-copy / auto | `BindFlags::force_copy`/`force_zerocopy`, neither = kernel fallback | used; which mode was obtained is read with `getsockopt(XDP_OPTIONS)` (`sys.rs`) |
//! | batched rings, no syscall per packet | yes: rings are mmapped, indices cached, libxdp's algorithm | used as is |
//! | need_wakeup | binds with `XDP_USE_NEED_WAKEUP` only through its "wakable" rings, and never reads the ring's flags word, so it cannot tell *when* the kernel wants a wakeup | the heads of the RX, TX and fill rings are mapped a second time, read-only, to read `flags`, `producer`, `consumer` (`rings.rs`) |
//! | raw fd | `AsRawFd` on the builder and the socket | used for the XSKMAP and socket options |
//! | busy polling | the options are commented out in its source | plain `setsockopt` (`sys.rs`) |
//! | `XDP_STATISTICS` | `XdpSocket::statistics` | used |
//! | retry on `EBUSY` | `bind` consumes the builder | a new socket per attempt on the same UMEM (`socket.rs`) |
//!
//! The crate says of itself that it is early days and driven by one user (Quilkin); it
//! is pinned to `=0.8.0` and none of its types appear in this module's public API, so it
//! can be replaced by hand-written rings without changing callers.
//!
//! # Ownership of UMEM frames and rings
//!
//! The socket owns the UMEM, the rings and the descriptor, and nothing else refers to
//! them: no frame is lent out past a call (callbacks get `&[u8]`/`&mut [u8]` for the
//! duration of the call), so the `unsafe` lifetime contracts of the crate's ring methods
//! (a frame must not outlive its UMEM) hold by construction. Every frame is in exactly one
//! place: the free list, the fill ring (or the kernel), the RX ring, a batch in progress,
//! or the TX ring/completion ring (`umem.rs` has the picture). Half of the frames (at most
//! a fill ring's worth) are kept in the fill ring; the others are for transmitting, and
//! [`XskSocket::send_batch`] never takes frames the fill ring is owed.
//!
//! # Why batches
//!
//! Each ring access touches two cache lines shared with the kernel (the producer and
//! consumer words) and each system call costs about as much as processing a packet.
//! [`XskSocket::recv_batch`], [`XskSocket::send_batch`] and [`XskSocket::echo_batch`]
//! move up to `max` frames per ring update and make at most one wakeup per batch, so
//! that the cost per packet falls with load, which is the point of steering into AF_XDP
//! instead of taking an interrupt per packet. (In copy mode the kernel transmits at most
//! 32 frames per `sendto`, so a large TX batch takes one call per 32 frames.)
//!
//! # need_wakeup
//!
//! With [`XskConfig::need_wakeup`] (the default), the socket is bound with
//! `XDP_USE_NEED_WAKEUP` and the kernel sets a flag in the fill and TX rings when it
//! needs a system call to go on: a zero-copy driver that ran out of fill entries sleeps
//! until `recvfrom`/`poll` wakes it; TX is processed only on `sendto` (in copy mode
//! always). The socket checks the flag after every batch and makes the call only then,
//! so a busy receiver in copy mode makes no system calls at all. Without need_wakeup, TX
//! is kicked after every batch and RX is never woken. [`XskCounters::wakeups`] counts
//! the calls made.
//!
//! # Busy polling
//!
//! With [`XskConfig::busy_poll`], the socket sets `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`
//! and `SO_BUSY_POLL_BUDGET`, and [`XskSocket::poll`] spins on `recvfrom(MSG_DONTWAIT)`,
//! which runs the queue's NAPI poll in the calling thread, instead of sleeping in
//! `poll(2)`. This needs a NAPI id ([`XskSocket::napi_id`]); on veth it is 0, so there
//! the options are accepted and change nothing.
//!
//! # Waiting
//!
//! [`XskSocket::wait`] waits for frames with a [`WaitStrategy`]: sleep in `poll(2)`
//! ([`XskSocket::poll`]), spin on the RX ring, or spin for a bounded time and then
//! sleep. Spinning needs no NAPI id, so unlike busy polling it also works on veth; see
//! `wait.rs` for the reasons and the measured default.
//!
//! # Registration and removal
//!
//! See `register.rs`: dropping a socket removes its XSKMAP entry only if the entry still
//! refers to it, which the kernel does on close; user space could not check it.
//!
//! # Minimum kernel version
//!
//! AF_XDP needs Linux 4.18, need_wakeup 5.4, `XDP_OPTIONS` 5.3, the busy-poll options
//! `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` 5.11; netmit targets 6.x.

mod config;
mod device;
pub mod echo;
mod error;
mod register;
mod rings;
mod socket;
mod stats;
mod sys;
mod umem;
mod wait;
mod watch;

pub use config::{BindMode, BusyPoll, XDP_PACKET_HEADROOM, XskConfig};
pub use error::XskError;
pub use register::RegistrationState;
pub use socket::{BUSY_RETRY, XskSocket};
pub use stats::{XskCounters, XskStats};
pub use wait::{DEFAULT_SPIN, MAX_SPIN, WaitParseError, WaitPlan, WaitStrategy};
pub use watch::{REGISTRATION_CHECK, RegistrationWatch, WatchEvent};
