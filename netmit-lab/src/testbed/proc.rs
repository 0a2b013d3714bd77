//! Per-namespace kernel state read and written through `/proc`: sysctls and the protocol
//! counters of `/proc/net/snmp` and `/proc/net/netstat`.
//!
//! `/proc/net` is a link to `/proc/self/net`, and `/proc/self` is the thread-group leader:
//! it shows the namespace of the process's *main thread*, not of a `setns`'d helper thread.
//! The counters are therefore read from `/proc/thread-self/net/…` on a thread inside the
//! namespace. `/proc/sys/net/…` follows the calling thread and needs no such care.

use std::{collections::HashMap, fs, path::PathBuf};

use super::{Result, Side, Testbed, TestbedError};

impl Testbed {
    /// Writes `value` to the sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) inside
    /// `side`'s namespace.
    ///
    /// # Errors
    /// [`TestbedError::Sysctl`] if the write fails (unknown key, value rejected), or an
    /// error of [`Testbed::try_in_ns`].
    pub fn sysctl(&self, side: Side, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.try_in_ns(side, || fs::write(&path, value))?
            .map_err(|source| TestbedError::Sysctl {
                ns: self.ns(side).to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                source,
            })
    }

    /// Reads one counter of `side`'s `/proc/net/snmp`, e.g. `("Udp", "OutDatagrams")` or
    /// `("Tcp", "OutSegs")`. Read through `/proc/thread-self/net` on a thread inside the
    /// namespace, because `/proc/net` follows the main thread's namespace.
    ///
    /// # Errors
    /// [`TestbedError::NoCounter`], [`TestbedError::NegativeCounter`], or the errors of
    /// [`Testbed::proc_net_counters`].
    pub fn snmp_counter(&self, side: Side, group: &str, name: &str) -> Result<u64> {
        self.proc_net_counter(side, "snmp", group, name)
    }

    /// Reads one counter of `side`'s `/proc/net/netstat`, e.g. `("TcpExt", "TCPTimeouts")`.
    ///
    /// # Errors
    /// As [`Testbed::snmp_counter`].
    pub fn netstat_counter(&self, side: Side, group: &str, name: &str) -> Result<u64> {
        self.proc_net_counter(side, "netstat", group, name)
    }

    /// All counters of `side`'s `/proc/net/<file>` (`snmp` or `netstat`), keyed
    /// `"Group.Name"`; negative values (only `Tcp.MaxConn`) are left out.
    ///
    /// # Errors
    /// [`TestbedError::ReadProc`] if the file cannot be read,
    /// [`TestbedError::ProcNetFormat`] if it is not in the expected format, or an error of
    /// [`Testbed::try_in_ns`].
    pub fn proc_net_counters(&self, side: Side, file: &str) -> Result<HashMap<String, u64>> {
        let text = self.read_proc_net(side, file)?;
        let mut map = HashMap::new();
        for (group, name, value) in parse_proc_net(file, &text)? {
            if let Ok(v) = u64::try_from(value) {
                map.insert(format!("{group}.{name}"), v);
            }
        }
        Ok(map)
    }

    fn read_proc_net(&self, side: Side, file: &str) -> Result<String> {
        let path = PathBuf::from(format!("/proc/thread-self/net/{file}"));
        self.try_in_ns(side, || fs::read_to_string(&path))?
            .map_err(|source| TestbedError::ReadProc {
                ns: self.ns(side).to_owned(),
                path,
                source,
            })
    }

    fn proc_net_counter(&self, side: Side, file: &str, group: &str, name: &str) -> Result<u64> {
        let text = self.read_proc_net(side, file)?;
        let Some(value) = parse_proc_net(file, &text)?
            .into_iter()
            .find(|(g, n, _)| g == group && n == name)
            .map(|(_, _, v)| v)
        else {
            return Err(TestbedError::NoCounter {
                ns: self.ns(side).to_owned(),
                file: file.to_owned(),
                group: group.to_owned(),
                name: name.to_owned(),
            });
        };
        u64::try_from(value).map_err(|_| TestbedError::NegativeCounter {
            ns: self.ns(side).to_owned(),
            file: file.to_owned(),
            group: group.to_owned(),
            name: name.to_owned(),
            value,
        })
    }
}

/// Parses the `Group: names…` / `Group: values…` line pairs of `/proc/net/snmp` and
/// `/proc/net/netstat` (`file` names which, for errors) into `(group, name, value)`.
pub(super) fn parse_proc_net(file: &str, text: &str) -> Result<Vec<(String, String, i64)>> {
    let malformed = |group: &str, message: String| TestbedError::ProcNetFormat {
        file: file.to_owned(),
        group: group.to_owned(),
        message,
    };
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some((group, names)) = header.split_once(':') else {
            continue;
        };
        let values_line = lines
            .next()
            .ok_or_else(|| malformed(group, "header line without a values line".to_owned()))?;
        let (vgroup, values) = values_line
            .split_once(':')
            .ok_or_else(|| malformed(group, format!("values line {values_line:?} has no `:`")))?;
        if vgroup != group {
            return Err(malformed(
                group,
                format!("values line belongs to {vgroup:?}"),
            ));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(malformed(
                group,
                format!("{} names but {} values", names.len(), values.len()),
            ));
        }
        for (name, value) in names.into_iter().zip(values) {
            let v = value
                .parse::<i64>()
                .map_err(|e| malformed(group, format!("{name} = {value:?}: {e}")))?;
            out.push((group.to_owned(), name.to_owned(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_parsing() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoMin MaxConn\nTcp: 200 -1\nUdp: InDatagrams NoPorts\nUdp: 7 3\n";
        let all = parse_proc_net("snmp", text).unwrap();
        assert!(all.contains(&("Udp".into(), "NoPorts".into(), 3)));
        assert!(all.contains(&("Tcp".into(), "MaxConn".into(), -1)));
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn proc_net_errors_say_what_was_parsed() {
        let cases = [
            ("Udp: A B\nUdp: 1\n", "Udp", "2 names but 1 values"),
            ("Udp: A\n", "Udp", "without a values line"),
            ("Udp: A\nTcp: 1\n", "Udp", "belongs to \"Tcp\""),
            ("Udp: A\nnonsense\n", "Udp", "\"nonsense\" has no `:`"),
            ("Ip: X\nIp: 1\nUdp: A\nUdp: x7\n", "Udp", "A = \"x7\""),
        ];
        for (text, want_group, want) in cases {
            match parse_proc_net("netstat", text) {
                Err(TestbedError::ProcNetFormat {
                    file,
                    group,
                    message,
                }) => {
                    assert_eq!((file.as_str(), group.as_str()), ("netstat", want_group));
                    assert!(message.contains(want), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
