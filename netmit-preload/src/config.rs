//! The library's configuration: environment variables read and validated once, when the
//! library is loaded. A bad value is one line on stderr and the library then does
//! nothing, so a typo never half-configures a server.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `NETMIT_BUSY_POLL_USECS` | 0..=2147483647 µs an `epoll_wait` busy-polls before it sleeps | 64 |
//! | `NETMIT_BUSY_POLL_BUDGET` | 1..=65535 packets per poll round (above 64 needs `CAP_NET_ADMIN`) | 64 |
//! | `NETMIT_PREFER_BUSY_POLL` | `0` or `1` (`1`: the application pledges to poll; IRQ suspension needs it) | 1 |
//! | `NETMIT_PRELOAD_MODE` | `auto` (EPIOCSPARAMS, else socket options), `epoll` (EPIOCSPARAMS only), `socket` (socket options only), `off` | auto |
//! | `NETMIT_PRELOAD_STATE_DIR` | an absolute directory for the state file, or empty for none | /run/netmit/preload |

use std::path::PathBuf;

/// Microseconds one `epoll_wait` busy-polls, by default.
pub const DEFAULT_USECS: u32 = 64;
/// Packets per busy-poll round, by default (`NAPI_POLL_WEIGHT`, the most without
/// `CAP_NET_ADMIN`).
pub const DEFAULT_BUDGET: u16 = 64;
/// Where the state files go, by default (netmit's run directory).
pub const DEFAULT_STATE_DIR: &str = "/run/netmit/preload";

/// The environment variables, by name.
pub mod vars {
    /// Busy-poll time per `epoll_wait`, µs.
    pub const USECS: &str = "NETMIT_BUSY_POLL_USECS";
    /// Packets per poll round.
    pub const BUDGET: &str = "NETMIT_BUSY_POLL_BUDGET";
    /// `prefer_busy_poll`.
    pub const PREFER: &str = "NETMIT_PREFER_BUSY_POLL";
    /// Which mechanism.
    pub const MODE: &str = "NETMIT_PRELOAD_MODE";
    /// State file directory.
    pub const STATE_DIR: &str = "NETMIT_PRELOAD_STATE_DIR";
}

/// Which mechanism the library may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `EPIOCSPARAMS`, falling back to socket options on kernels without it.
    Auto,
    /// `EPIOCSPARAMS` only: on kernels without it the library stays out of the way.
    Epoll,
    /// `SO_BUSY_POLL`/`SO_PREFER_BUSY_POLL`/`SO_BUSY_POLL_BUDGET` on every socket added
    /// to an epoll set (affects blocking socket reads, not `epoll_wait`).
    Socket,
    /// Nothing at all (the library only passes calls through).
    Off,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `busy_poll_usecs`.
    pub usecs: u32,
    /// `busy_poll_budget`.
    pub budget: u16,
    /// `prefer_busy_poll` (0 or 1).
    pub prefer: u8,
    /// The mechanism.
    pub mode: Mode,
    /// Where to export the state file (`None`: nowhere).
    pub state_dir: Option<PathBuf>,
}

impl Config {
    /// Reads the configuration through `get` (the environment, or a test's map).
    ///
    /// # Errors
    ///
    /// One line naming the variable, the value, what it takes, and that the library is
    /// off for this process.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let bad = |var: &str, value: &str, want: &str| {
            format!(
                "netmit-preload: {var}=`{value}` is not {want}; busy polling stays off for this \
                 process (fix or unset {var})"
            )
        };
        let num = |var: &str, lo: u64, hi: u64, want: &str, default: u64| match get(var) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) && v.trim() == v => Ok(n),
                _ => Err(bad(var, &v, want)),
            },
        };
        let usecs = num(
            vars::USECS,
            0,
            i32::MAX as u64,
            "a number of microseconds (0..=2147483647)",
            DEFAULT_USECS.into(),
        )?;
        let budget = num(
            vars::BUDGET,
            1,
            u16::MAX.into(),
            "a number of packets (1..=65535)",
            DEFAULT_BUDGET.into(),
        )?;
        let prefer = num(vars::PREFER, 0, 1, "0 or 1", 1)?;
        let mode = match get(vars::MODE).as_deref() {
            None | Some("auto") => Mode::Auto,
            Some("epoll") => Mode::Epoll,
            Some("socket") => Mode::Socket,
            Some("off") => Mode::Off,
            Some(v) => return Err(bad(vars::MODE, v, "one of auto, epoll, socket, off")),
        };
        let state_dir = match get(vars::STATE_DIR) {
            None => Some(PathBuf::from(DEFAULT_STATE_DIR)),
            Some(v) if v.is_empty() => None,
            Some(v) if v.starts_with('/') && !v.contains('\n') => Some(PathBuf::from(v)),
            Some(v) => return Err(bad(vars::STATE_DIR, &v, "an absolute path (or empty)")),
        };
        Ok(Config {
            // Bounded above by the ranges given to `num`.
            usecs: usecs as u32,
            budget: budget as u16,
            prefer: prefer as u8,
            mode,
            state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_values() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.usecs, c.budget, c.prefer, c.mode),
            (64, 64, 1, Mode::Auto)
        );
        assert_eq!(c.state_dir.unwrap(), PathBuf::from(DEFAULT_STATE_DIR));
        let c = parse(&[
            (vars::USECS, "200"),
            (vars::BUDGET, "8"),
            (vars::PREFER, "0"),
            (vars::MODE, "socket"),
            (vars::STATE_DIR, ""),
        ])
        .unwrap();
        assert_eq!(
            (c.usecs, c.budget, c.prefer, c.mode),
            (200, 8, 0, Mode::Socket)
        );
        assert_eq!(c.state_dir, None);
    }

    #[test]
    fn bad_values_are_one_line_naming_the_variable() {
        for (var, value) in [
            (vars::USECS, "abc"),
            (vars::USECS, "-1"),
            (vars::USECS, "2147483648"),
            (vars::USECS, " 5"),
            (vars::BUDGET, "0"),
            (vars::BUDGET, "65536"),
            (vars::PREFER, "2"),
            (vars::PREFER, "yes"),
            (vars::MODE, "fast"),
            (vars::STATE_DIR, "relative/dir"),
        ] {
            let e = parse(&[(var, value)]).unwrap_err();
            assert!(e.contains(var) && e.contains(value), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
