//! The daemon's configuration file (TOML), parsed and validated with the line and key of
//! every problem.
//!
//! ```toml
//! interval = "1s"                      # sampling interval, e.g. 500ms or 2s (10ms ..= 1h)
//! metrics_address = "127.0.0.1:9464"   # /metrics, /healthz, /status
//!
//! [[interface]]
//! name = "eth1"
//! attach = "native"                    # native | generic | auto (default) | none (tune only)
//! steer = ["proto=udp,dport=9000,action=xsk"]
//! keep_attached_on_exit = false
//! log = "off"                          # the XDP program's log: off | error | warn | info | debug
//! max_mode = "defer"                   # overrides policy.max_mode
//! policy = { min_dwell_ms = 5000, defer = { enter_packets_per_sec = 20000 } }
//! ```
//!
//! # Why two passes
//!
//! Parsing ([`DaemonConfig::parse`]) is pure: syntax, unknown keys, types, durations,
//! addresses, rules, duplicate interfaces and the policy's own validation
//! ([`PolicyConfig::validate`]). Checking the system ([`DaemonConfig::check_system`]:
//! every interface exists in the daemon's network namespace) is separate, so the parser
//! is unit-tested without root and the daemon can decide when a missing interface is an
//! error (start-up, reload, `--check-config`) and when it is waited for (at run time).
//!
//! Semantic checks collect every problem rather than stopping at the first, so
//! `netmit daemon --check-config` lists them all. A serde error (unknown key, wrong type)
//! stops the parse; its key path is recovered from the error's byte span by walking the
//! document's spanned tree, because serde errors carry only the span.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use crate::{
    control::{Mode, Policy, PolicyConfig},
    duration,
    ebpf::{LogLevel, ModeRequest},
    host::Host,
    steer::Rule,
    sys::IfName,
};

/// Default address of the metrics server.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// Default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest interval accepted: below it a tick's netlink and map reads dominate.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// What to do about XDP on an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachSetting {
    /// Native XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Do not attach: only tune the interface's NAPI settings.
    None,
}

impl AttachSetting {
    /// The setting's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            AttachSetting::Native => "native",
            AttachSetting::Generic => "generic",
            AttachSetting::Auto => "auto",
            AttachSetting::None => "none",
        }
    }

    /// The attach request, or `None` for [`AttachSetting::None`].
    pub fn request(self) -> Option<ModeRequest> {
        match self {
            AttachSetting::Native => Some(ModeRequest::Native),
            AttachSetting::Generic => Some(ModeRequest::Generic),
            AttachSetting::Auto => Some(ModeRequest::Auto),
            AttachSetting::None => None,
        }
    }
}

/// One managed interface.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceConfig {
    /// Interface name.
    pub name: IfName,
    /// Where `name` is in the file (for errors found later, such as a missing interface).
    pub name_at: Location,
    /// XDP attachment.
    pub attach: AttachSetting,
    /// Steering rules installed when the daemon attaches.
    pub rules: Vec<Rule>,
    /// Leave XDP attached when the daemon exits.
    pub keep_attached_on_exit: bool,
    /// The XDP program's log level when the daemon attaches it; its records go into the
    /// daemon's log (for a program attached by others, when it logs).
    pub log: LogLevel,
    /// The validated policy (`max_mode` applied).
    pub policy: Policy,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Where it was read from (for messages).
    pub origin: String,
    /// Sampling interval.
    pub interval: Duration,
    /// Metrics server address.
    pub metrics_address: SocketAddr,
    /// Managed interfaces, in file order.
    pub interfaces: Vec<InterfaceConfig>,
}

/// Line and key path of a value in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// Key path, e.g. `interface[1].steer[0]`.
    pub key: String,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where (line 0 when the problem has no position, e.g. an empty file).
    pub at: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.at.line, self.at.key.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "key {}: {}", self.at.key, self.message),
            (l, true) => write!(f, "line {l}: {}", self.message),
            (l, false) => write!(f, "line {l}, key {}: {}", self.at.key, self.message),
        }
    }
}

/// What a TOML-level error (syntax, an unknown key, a wrong type, a missing field) adds:
/// where every key is shown with its type and default.
const TEMPLATE_HINT: &str = "every key, its type and its default are in \
     /usr/share/doc/netmit/netmit.toml.example (deploy/netmit.toml.example in the source): \
     use it as the template";

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the configuration {path} (check the path and its permissions)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("{}", render(origin, problems))]
    Invalid {
        /// Where it came from.
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render(origin: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{origin}: {p}")).collect();
    lines.join("\n")
}

impl ConfigError {
    /// The problems, if the configuration was read but is invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interval: Option<Spanned<String>>,
    metrics_address: Option<Spanned<String>>,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    #[serde(default)]
    attach: AttachSetting,
    #[serde(default)]
    steer: Vec<Spanned<String>>,
    #[serde(default)]
    keep_attached_on_exit: bool,
    #[serde(default)]
    log: LogLevel,
    policy: Option<Spanned<PolicyConfig>>,
    max_mode: Option<Spanned<Mode>>,
}

/// Byte offset to 1-based line.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key path of the innermost key or value whose span contains `pos`. Table spans
/// in toml's tree are their headers only, so the walk visits every child instead of
/// pruning by the container's span.
pub(crate) fn key_path_at(text: &str, pos: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk_table(doc.get_ref(), pos, &mut path).then(|| join_path(&path))
}

enum Seg {
    Key(String),
    Index(usize),
}

fn join_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn contains(span: Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

fn walk_table(table: &DeTable<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
    for (k, v) in table {
        path.push(Seg::Key(k.get_ref().to_string()));
        if contains(k.span(), pos) || walk_value(v, pos, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn walk_value(v: &Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<Seg>) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, pos, path) || contains(v.span(), pos),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if walk_value(e, pos, path) {
                    return true;
                }
                path.pop();
            }
            contains(v.span(), pos)
        }
        _ => contains(v.span(), pos),
    }
}

impl DaemonConfig {
    /// Reads and parses a configuration file (no system checks; see
    /// [`DaemonConfig::check_system`]).
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates the text of a configuration; `origin` names it in messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found (only the first when the TOML
    /// itself or a key's type is wrong).
    pub fn parse(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (
                    line_of(text, span.start),
                    key_path_at(text, span.start).unwrap_or_default(),
                ),
                None => (0, String::new()),
            };
            invalid(vec![Problem {
                at: Location { line, key },
                message: format!("{}; {TEMPLATE_HINT}", e.message().trim()),
            }])
        })?;
        let mut problems = Vec::new();
        let at = |span: Range<usize>, key: String| Location {
            line: line_of(text, span.start),
            key,
        };

        let interval = match &raw.interval {
            None => DEFAULT_INTERVAL,
            Some(s) => match duration::parse(s.get_ref()).and_then(|d| {
                duration::check_range("the interval", s.get_ref(), d, MIN_INTERVAL, MAX_INTERVAL)
            }) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(Problem {
                        at: at(s.span(), "interval".into()),
                        message: e.to_string(),
                    });
                    DEFAULT_INTERVAL
                }
            },
        };
        let default_addr: SocketAddr = DEFAULT_METRICS_ADDRESS.parse().expect("valid default");
        let metrics_address = match &raw.metrics_address {
            None => default_addr,
            Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
                problems.push(Problem {
                    at: at(s.span(), "metrics_address".into()),
                    message: format!(
                        "`{}` is not an address with a port (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")",
                        s.get_ref()
                    ),
                });
                default_addr
            }),
        };

        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut interfaces = Vec::new();
        for (i, iface) in raw.interface.iter().enumerate() {
            let iface = iface.get_ref();
            let name = iface.name.get_ref().clone();
            let name_at = at(iface.name.span(), format!("interface[{i}].name"));
            let valid = match IfName::new(&name) {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(Problem {
                        at: name_at.clone(),
                        message: e.to_string(),
                    });
                    None
                }
            };
            if let Some(first) = seen.get(&name) {
                problems.push(Problem {
                    at: name_at.clone(),
                    message: format!(
                        "duplicate interface `{name}`: already configured in interface[{first}]; \
                         remove one of the two entries"
                    ),
                });
            } else {
                seen.insert(name.clone(), i);
            }
            let mut rules = Vec::new();
            for (j, rule) in iface.steer.iter().enumerate() {
                match rule.get_ref().parse::<Rule>() {
                    Ok(r) => rules.push(r),
                    Err(e) => problems.push(Problem {
                        at: at(rule.span(), format!("interface[{i}].steer[{j}]")),
                        message: format!("malformed rule `{}`: {e}", rule.get_ref()),
                    }),
                }
            }
            if !iface.steer.is_empty() && iface.attach == AttachSetting::None {
                problems.push(Problem {
                    at: at(iface.steer[0].span(), format!("interface[{i}].steer")),
                    message: "steering rules need XDP: with attach = \"none\" there is no \
                              program to install them in; remove `steer` or set attach = \
                              \"auto\""
                        .into(),
                });
            }
            if rules.len() > netmit_common::MAX_RULES {
                problems.push(Problem {
                    at: at(iface.steer[0].span(), format!("interface[{i}].steer")),
                    message: format!(
                        "{} rules; an interface holds at most {}",
                        rules.len(),
                        netmit_common::MAX_RULES
                    ),
                });
            }
            let mut policy_config = iface
                .policy
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default();
            if let Some(m) = &iface.max_mode {
                policy_config.max_mode = *m.get_ref();
            }
            let policy_at = |iface: &RawInterface| {
                iface
                    .policy
                    .as_ref()
                    .map(|p| p.span())
                    .unwrap_or(iface.name.span())
            };
            // A hold time shorter than one interval is decided by a single sample: the
            // configuration says "for 300 ms" and the daemon cannot look that closely.
            let interval_ms = interval.as_millis();
            let dwell = ("min_dwell_ms", policy_config.min_dwell_ms);
            for (key, ms) in policy_config.hold_times().into_iter().chain([dwell]) {
                if ms > 0 && u128::from(ms) < interval_ms {
                    problems.push(Problem {
                        at: at(policy_at(iface), format!("interface[{i}].policy.{key}")),
                        message: format!(
                            "{key} = {ms} is shorter than the interval ({}): a single sample \
                             would decide it; set it to 0 (one sample) or at least \
                             {interval_ms}, or shorten the interval",
                            duration::display(interval)
                        ),
                    });
                }
            }
            let policy = match Policy::new(policy_config) {
                Ok(p) => p,
                Err(e) => {
                    let span = iface
                        .policy
                        .as_ref()
                        .map(|p| p.span())
                        .unwrap_or(iface.name.span());
                    problems.push(Problem {
                        at: at(span, format!("interface[{i}].policy")),
                        message: e.to_string(),
                    });
                    Policy::default()
                }
            };
            // An invalid name is a problem already; the entry only completes the pass.
            let Some(name) = valid else { continue };
            interfaces.push(InterfaceConfig {
                name,
                name_at,
                attach: iface.attach,
                rules,
                keep_attached_on_exit: iface.keep_attached_on_exit,
                log: iface.log,
                policy,
            });
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        Ok(DaemonConfig {
            origin: origin.to_string(),
            interval,
            metrics_address,
            interfaces,
        })
    }

    /// Checks what depends on the system: every interface exists in this network
    /// namespace.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming each missing interface, its line and namespace.
    pub fn check_system(&self, host: &dyn Host) -> Result<(), ConfigError> {
        let problems: Vec<Problem> = self
            .interfaces
            .iter()
            .filter_map(|i| host.resolve(&i.name).err().map(|e| (i, e)))
            .map(|(i, e)| Problem {
                at: i.name_at.clone(),
                message: e.to_string(),
            })
            .collect();
        let mut problems = problems;
        // Attaching needs bpffs; say so now rather than fail every interval.
        if let Some(first) = self
            .interfaces
            .iter()
            .find(|i| i.attach.request().is_some())
            && let Err(e) = host.check_pins()
        {
            problems.push(Problem {
                at: first.name_at.clone(),
                message: format!(
                    "attach = \"{}\" needs netmit's pins: {e}",
                    first.attach.name()
                ),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: self.origin.clone(),
                problems,
            })
        }
    }

    /// The interface called `name`.
    pub fn interface(&self, name: &str) -> Option<&InterfaceConfig> {
        self.interfaces.iter().find(|i| i.name.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match DaemonConfig::parse(text, "test.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.problems().to_vec(),
        }
    }

    fn one(text: &str) -> (usize, String, String) {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        (p[0].at.line, p[0].at.key.clone(), p[0].message.clone())
    }

    #[test]
    fn full_file_parses() {
        let c = DaemonConfig::parse(
            "interval = \"100ms\"\nmetrics_address = \"127.0.0.1:19464\"\n\n\
             [[interface]]\nname = \"eth1\"\nattach = \"native\"\n\
             steer = [\"proto=udp,dport=9000,action=xsk\"]\nkeep_attached_on_exit = true\n\
             max_mode = \"defer\"\npolicy = { min_dwell_ms = 500, defer = { enter_after_ms = 300 } }\n\n\
             [[interface]]\nname = \"eth2\"\nattach = \"none\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_millis(100));
        assert_eq!(c.metrics_address, "127.0.0.1:19464".parse().unwrap());
        assert_eq!(c.interfaces.len(), 2);
        let a = &c.interfaces[0];
        assert_eq!(a.name.as_str(), "eth1");
        assert_eq!(a.name_at.line, 5);
        assert_eq!(a.attach, AttachSetting::Native);
        assert_eq!(a.rules.len(), 1);
        assert!(a.keep_attached_on_exit);
        let p = a.policy.config();
        assert_eq!(p.max_mode, Mode::Defer);
        assert_eq!(p.min_dwell_ms, 500);
        assert_eq!(p.defer.enter_after_ms, 300);
        assert_eq!(
            p.defer.exit_after_ms, 5_000,
            "unnamed keys keep their defaults"
        );
        let b = &c.interfaces[1];
        assert_eq!(b.attach, AttachSetting::None);
        assert_eq!(b.policy, Policy::default());
    }

    #[test]
    fn defaults() {
        let c = DaemonConfig::parse("", "t").unwrap();
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.metrics_address.to_string(), DEFAULT_METRICS_ADDRESS);
        assert!(c.interfaces.is_empty());
        let c = DaemonConfig::parse("[[interface]]\nname = \"x\"\n", "t").unwrap();
        assert_eq!(c.interfaces[0].attach, AttachSetting::Auto);
    }

    #[test]
    fn unknown_keys_name_line_and_path() {
        assert_eq!(
            one("interval = \"1s\"\nintervall = \"2s\"\n"),
            (
                2,
                "intervall".into(),
                format!(
                    "unknown field `intervall`, expected one of `interval`, `metrics_address`, `interface`; {TEMPLATE_HINT}"
                )
            )
        );
        let (line, key, msg) =
            one("[[interface]]\nname = \"a\"\n\n[[interface]]\nname = \"b\"\nstere = [\"x\"]\n");
        assert_eq!((line, key.as_str()), (6, "interface[1].stere"));
        assert!(msg.starts_with("unknown field `stere`"), "{msg}");
        let (line, key, msg) = one(
            "[[interface]]\nname = \"a\"\npolicy = { min_dwell_ms = 5, defer = { enter_pps = 1 } }\n",
        );
        assert_eq!(
            (line, key.as_str()),
            (3, "interface[0].policy.defer.enter_pps")
        );
        assert!(msg.contains("unknown field `enter_pps`"), "{msg}");
        // A wrong type in a sub-table given as a header.
        let (line, key, msg) =
            one("[[interface]]\nname = \"a\"\n[interface.policy]\nmin_dwell_ms = \"x\"\n");
        assert_eq!(
            (line, key.as_str()),
            (4, "interface[0].policy.min_dwell_ms")
        );
        assert!(msg.contains("invalid type"), "{msg}");
        let (line, key, _) = one("[[interface]]\nname = \"a\"\nattach = \"xdp\"\n");
        assert_eq!((line, key.as_str()), (3, "interface[0].attach"));
    }

    /// Issue 13: relations between values, not only each value's range.
    #[test]
    fn relations_between_values_are_checked() {
        let (line, key, msg) = one("interval = \"100ms\"\n[[interface]]\nname = \"a\"\n\
             policy = { min_dwell_ms = 100 }\n");
        assert_eq!((line, key.as_str()), (4, "interface[0].policy"));
        assert!(
            msg.contains("min_dwell_ms = 100 is below every hold time")
                && msg.contains("suspend.enter_after_ms = 2000")
                && msg.contains("set min_dwell_ms to 0"),
            "{msg}"
        );
        let (line, key, msg) = one("interval = \"2s\"\n[[interface]]\nname = \"a\"\n\
             policy = { min_dwell_ms = 0, defer = { enter_after_ms = 1500 } }\n");
        assert_eq!(
            (line, key.as_str()),
            (4, "interface[0].policy.defer.enter_after_ms")
        );
        assert!(
            msg.contains("shorter than the interval (2s)") && msg.contains("at least 2000"),
            "{msg}"
        );
        // No dwell at all, and holds of 0 (one sample), are what they say.
        DaemonConfig::parse(
            "[[interface]]\nname = \"a\"\npolicy = { min_dwell_ms = 0, defer = { \
             enter_after_ms = 0 } }\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn bad_duration() {
        let (line, key, msg) = one("\n\ninterval = \"10\"\n");
        assert_eq!((line, key.as_str()), (3, "interval"));
        assert!(msg.contains("needs a unit"), "{msg}");
        let (_, _, msg) = one("interval = \"5x\"\n");
        assert!(msg.contains("unknown unit `x`"), "{msg}");
        let (_, _, msg) = one("interval = \"99999999999999999999s\"\n");
        assert!(msg.contains("too long"), "{msg}");
        let (_, _, msg) = one("interval = \"1ms\"\n");
        assert!(msg.contains("out of range"), "{msg}");
        let p = problems("interval = \"1s\"\nmetrics_address = \"localhost\"\n");
        assert_eq!(p[0].at.line, 2);
        assert_eq!(p[0].at.key, "metrics_address");
    }

    #[test]
    fn malformed_rule() {
        let (line, key, msg) =
            one("[[interface]]\nname = \"a\"\nsteer = [\n  \"proto=udp\",\n  \"proto=icmp\",\n]\n");
        assert_eq!((line, key.as_str()), (5, "interface[0].steer[1]"));
        assert!(msg.starts_with("malformed rule `proto=icmp`"), "{msg}");
        let (_, key, _) =
            one("[[interface]]\nname = \"a\"\nattach = \"none\"\nsteer = [\"proto=udp\"]\n");
        assert_eq!(key, "interface[0].steer");
    }

    #[test]
    fn duplicate_interface() {
        let (line, key, msg) = one(
            "[[interface]]\nname = \"a\"\n[[interface]]\nname = \"b\"\n[[interface]]\nname = \"a\"\n",
        );
        assert_eq!((line, key.as_str()), (6, "interface[2].name"));
        assert_eq!(
            msg,
            "duplicate interface `a`: already configured in interface[0]; remove one of the \
             two entries"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let p = problems(
            "interval = \"fast\"\n[[interface]]\nname = \"a\"\nsteer = [\"dport=99999\"]\n\
             [[interface]]\nname = \"a\"\npolicy = { defer = { exit_packets_per_sec = 50000 } }\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.at.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "interval",
                "interface[0].steer[0]",
                "interface[1].name",
                "interface[1].policy"
            ]
        );
        assert!(p[3].message.contains("must exceed"), "{}", p[3].message);
        let rendered = ConfigError::Invalid {
            origin: "f.toml".into(),
            problems: p,
        }
        .to_string();
        assert!(
            rendered.starts_with("f.toml: line 1, key interval: "),
            "{rendered}"
        );
        assert_eq!(rendered.lines().count(), 4);
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let p = problems("interval = \"1s\"\n[[interface]\nname = \"a\"\n");
        assert_eq!(p[0].at.line, 2, "{p:?}");
    }

    #[test]
    fn max_mode_overrides_policy() {
        let c = DaemonConfig::parse(
            "[[interface]]\nname = \"a\"\nmax_mode = \"interrupt\"\npolicy = { max_mode = \"suspend\" }\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.interfaces[0].policy.config().max_mode, Mode::Interrupt);
    }

    #[test]
    fn unknown_interface_is_a_system_check() {
        let host = crate::host::fake::FakeHost::new();
        host.add("eth1", 1);
        let c = DaemonConfig::parse("\n[[interface]]\nname = \"nmno0such\"\n", "t").unwrap();
        let e = c.check_system(&host).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "t: line 3, key interface[0].name: interface `nmno0such` does not exist in \
                 network namespace net:["
            ),
            "{e}"
        );
        let ok = DaemonConfig::parse("[[interface]]\nname = \"eth1\"\n", "t").unwrap();
        ok.check_system(&host).unwrap();
    }

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for bad in [".", "..", "x/..", "a b", "0123456789abcdef", ""] {
            let (_, key, msg) = one(&format!("[[interface]]\nname = \"{bad}\"\n"));
            assert_eq!(key, "interface[0].name", "{bad}");
            assert!(msg.contains("interface name"), "{bad}: {msg}");
        }
    }
}
