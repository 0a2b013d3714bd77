//! [`RegistrationWatch`]: what a long-running receiver does when netmit is detached under
//! it. Checked now and then (reading pins is too slow for every batch), it either stops
//! the receiver or, when asked to wait, registers it again in the next attachment.

use std::time::{Duration, Instant};

use super::{RegistrationState, XskError, XskSocket};

/// How often [`RegistrationWatch::check`] looks at the pins by default.
pub const REGISTRATION_CHECK: Duration = Duration::from_millis(500);

/// What changed since the last check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// Nothing to report: still registered, not due yet, or still waiting.
    Quiet,
    /// The registration no longer holds and the watch does not wait: stop receiving.
    Lost(RegistrationState),
    /// The registration no longer holds; the watch waits for a new attachment (reported
    /// once per loss).
    Waiting(RegistrationState),
    /// The socket was registered in a new attachment after [`WatchEvent::Waiting`].
    Registered,
}

/// Watches one socket's registration (see the module docs).
#[derive(Debug)]
pub struct RegistrationWatch {
    wait: bool,
    every: Duration,
    next: Instant,
    waiting: bool,
}

impl RegistrationWatch {
    /// A watch that checks every [`REGISTRATION_CHECK`]; with `wait`, a lost registration
    /// is renewed when netmit is attached again instead of ending the receiver.
    pub fn new(wait: bool) -> Self {
        Self::every(wait, REGISTRATION_CHECK)
    }

    /// A watch that checks every `every`.
    pub fn every(wait: bool, every: Duration) -> Self {
        RegistrationWatch {
            wait,
            every,
            next: Instant::now() + every,
            waiting: false,
        }
    }

    /// Checks `sock` if a check is due. Cheap when it is not (one clock read).
    ///
    /// # Errors
    ///
    /// Those of [`XskSocket::registration_state`].
    pub fn check(&mut self, sock: &mut XskSocket) -> Result<WatchEvent, XskError> {
        let now = Instant::now();
        if now < self.next {
            return Ok(WatchEvent::Quiet);
        }
        self.next = now + self.every;
        let state = sock.registration_state()?;
        if state.is_current() {
            return Ok(WatchEvent::Quiet);
        }
        if !self.wait {
            return Ok(WatchEvent::Lost(state));
        }
        // A new attachment has a new map: register as soon as there is one.
        if sock.register().is_ok() {
            self.waiting = false;
            return Ok(WatchEvent::Registered);
        }
        if self.waiting {
            return Ok(WatchEvent::Quiet);
        }
        self.waiting = true;
        Ok(WatchEvent::Waiting(state))
    }
}

impl RegistrationState {
    /// Why a socket in this state receives nothing, for messages.
    pub fn describe(self, iface: &str) -> String {
        match self {
            RegistrationState::Current => format!("registered in netmit's map of {iface}"),
            RegistrationState::Unregistered => {
                format!("not registered in netmit's map of {iface}")
            }
            RegistrationState::Detached => {
                format!("netmit was detached from {iface}; nothing is steered to this socket")
            }
            RegistrationState::Replaced => format!(
                "netmit was detached from {iface} and attached again; this socket is not in \
                 the new program's map"
            ),
        }
    }
}
