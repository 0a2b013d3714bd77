//! The steering program's log: rare events (a flow steered to a queue without an AF_XDP
//! socket, malformed frames, sampled as their count doubles, and at debug level a rule
//! table swap), written by aya-log into the program's ring buffer and forwarded here into
//! netmit's own log (the CLI's stderr, the daemon's journal).
//!
//! Off by default: the level is a read-only global of the object, so with logging off the
//! verifier removes every log statement and the per-packet path costs what it did without
//! them (`cargo xtask bench xdp` measures it). The level is fixed when the program is
//! loaded (`netmit attach --log LEVEL`, `log = "..."` in the daemon's configuration);
//! [`Forwarder::for_program`] reads the log of any attached program, pinned or not.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Which of the program's events are logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Nothing (the default): no cost at all.
    #[default]
    Off,
    /// Errors only (the program has none today).
    Error,
    /// Flows steered to a queue that has no socket.
    Warn,
    /// And malformed frames.
    Info,
    /// And rule table swaps.
    Debug,
}

impl LogLevel {
    /// Every level, mildest first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Off,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
    ];

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }

    /// The value of aya-log's `AYA_LOG_LEVEL` global (its `Level` numbering, 0 for off).
    pub(crate) fn global(self) -> &'static u8 {
        static VALUES: [u8; 5] = [0, 1, 2, 3, 4];
        &VALUES[self as usize]
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log level: use off, error, warn, info or debug")]
pub struct LogLevelError(String);

impl FromStr for LogLevel {
    type Err = LogLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| LogLevelError(s.into()))
    }
}

/// Errors opening a program's log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The program or its log map is not there.
    #[error("program {prog_id} has no log to read (it is gone, or was loaded without aya-log)")]
    Open {
        /// The program id.
        prog_id: u32,
        /// The error.
        #[source]
        source: aya_log::Error,
    },
    /// No such program (any more).
    #[error("program {prog_id} is not loaded")]
    Gone {
        /// The program id.
        prog_id: u32,
    },
}

/// Reads one program's log records and writes them to the `log` crate's logger, under the
/// target `netmit::xdp`.
pub struct Forwarder {
    prog_id: u32,
    inner: aya_log::EbpfLogger<&'static dyn log::Log>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("prog_id", &self.prog_id)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Opens the log of loaded program `prog_id` (found through the program's maps).
    ///
    /// # Errors
    ///
    /// [`LogError::Open`] when the program is gone or has no log map.
    pub fn for_program(prog_id: u32) -> Result<Forwarder, LogError> {
        let inner = aya_log::EbpfLogger::init_from_id(prog_id)
            .map_err(|source| LogError::Open { prog_id, source })?;
        Ok(Forwarder { prog_id, inner })
    }

    /// The program it reads.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Writes every record logged since the last call.
    pub fn flush(&mut self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globals() {
        for l in LogLevel::ALL {
            assert_eq!(l.name().parse::<LogLevel>(), Ok(l));
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
        assert_eq!(*LogLevel::Off.global(), 0);
        assert_eq!(*LogLevel::Debug.global(), 4);
        assert!(
            "loud"
                .parse::<LogLevel>()
                .unwrap_err()
                .to_string()
                .contains("off, error")
        );
    }
}
