//! Names of testbed namespaces and interfaces: prefixes, the per-process counter, and
//! finding what a process left behind. The scheme is described in the
//! [module documentation](super#naming).

use std::{
    fs,
    sync::atomic::{AtomicU64, Ordering},
};

use super::{Result, TestbedError};

/// Where `ip netns` keeps its named namespaces (bind mounts of `/proc/<pid>/ns/net`).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest interface name the kernel accepts (`IFNAMSIZ` minus the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// What every testbed name starts with, whatever its prefix.
pub const NAME_STEM: &str = "nm";

/// Process-wide counter making testbed names unique within this process (shared by all
/// prefixes, so that addresses, derived from it, are distinct too).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The next counter value of this process.
pub(super) fn next_counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The prefix shared by every namespace and interface name that [`Testbed::new`] creates
/// in this process: `nm<pid>x`. Pass it to [`leftovers`].
///
/// [`Testbed::new`]: super::Testbed::new
pub fn process_prefix() -> String {
    format!("{NAME_STEM}{}x", std::process::id())
}

/// A prefix for [`Testbed::with_prefix`] that tells its testbeds apart from the default
/// ones and is still unique to this process: `nm<tag><pid>x`, e.g. `nmb4711x` for the tag
/// `b`. `tag` should be a short run of lowercase letters (it must not start with a digit);
/// [`Testbed::with_prefix`] checks the result.
///
/// [`Testbed::with_prefix`]: super::Testbed::with_prefix
pub fn tagged_prefix(tag: &str) -> String {
    format!("{NAME_STEM}{tag}{}x", std::process::id())
}

/// Checks that `prefix` follows the naming rules: it starts with `nm`, then either is this
/// process's [`process_prefix`] or continues with a letter (names `nm<digit>…` belong to
/// `process_prefix` of some process), uses only ASCII letters, digits, `-` and `_`, does
/// not end in a digit (the counter follows it), and leaves room in an interface name for
/// one counter character and the side letter.
pub(super) fn check_prefix(prefix: &str) -> Result<()> {
    let invalid = |reason: String| {
        Err(TestbedError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    let Some(rest) = prefix.strip_prefix(NAME_STEM) else {
        return invalid(format!(
            "it must start with `{NAME_STEM}`, as all testbed names do"
        ));
    };
    if rest.starts_with(|c: char| c.is_ascii_digit()) && prefix != process_prefix() {
        return invalid(format!(
            "`{NAME_STEM}` followed by a digit is reserved for process_prefix() \
             (`{NAME_STEM}<pid>x`); use tagged_prefix()"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return invalid(format!(
            "{c:?} is not allowed (only ASCII letters, digits, `-` and `_`)"
        ));
    }
    if prefix.ends_with(|c: char| c.is_ascii_digit()) {
        return invalid("it must not end in a digit: the counter follows it".to_owned());
    }
    let max = IFNAME_MAX - 2;
    if prefix.len() > max {
        return invalid(format!(
            "{} bytes long, at most {max} leave room for the counter and the side letter \
             in a {IFNAME_MAX}-byte interface name",
            prefix.len()
        ));
    }
    Ok(())
}

/// The name stem (`<prefix><n>`) of testbed number `n`; the side letter is appended.
pub(super) fn base_name(prefix: &str, n: u64) -> Result<String> {
    // One byte is reserved for the side letter.
    let budget = IFNAME_MAX.saturating_sub(prefix.len() + 1);
    let decimal = n.to_string();
    if decimal.len() <= budget {
        return Ok(format!("{prefix}{decimal}"));
    }
    // Letters only, so this can never equal a decimal (digits only) counter.
    let mut letters = String::new();
    let mut rest = n;
    loop {
        letters.insert(0, char::from(b'a' + (rest % 26) as u8));
        rest /= 26;
        if rest == 0 {
            break;
        }
    }
    if letters.len() > budget {
        return Err(TestbedError::NoFreeName {
            prefix: prefix.to_owned(),
            counter: n,
        });
    }
    Ok(format!("{prefix}{letters}"))
}

/// Lists what starts with `prefix` and still exists: named namespaces in
/// [`NETNS_RUN_DIR`] (as `"netns <name>"`) and interfaces in this process's own network
/// namespace, read from `/sys/class/net` (as `"link <name>"`). Empty means nothing was left
/// behind. Unreadable directories count as empty.
///
/// Pass [`process_prefix`] for the testbeds of [`Testbed::new`], the prefix given to
/// [`Testbed::with_prefix`] (also [`Testbed::prefix`]) for the others, or [`NAME_STEM`]
/// for whatever any testbed of any process left on this host.
///
/// [`Testbed::new`]: super::Testbed::new
/// [`Testbed::with_prefix`]: super::Testbed::with_prefix
/// [`Testbed::prefix`]: super::Testbed::prefix
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (dir, kind) in [(NETNS_RUN_DIR, "netns"), ("/sys/class/net", "link")] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                found.push(format!("{kind} {name}"));
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_are_distinct() {
        for pid in [1, 99_999, 4_194_304, u32::MAX] {
            let prefix = format!("nm{pid}x");
            let mut seen = HashSet::new();
            let budget = IFNAME_MAX - prefix.len() - 1;
            let decimal_limit = 10u64.pow(budget as u32);
            let probe: BTreeSet<u64> = (0..3000)
                .chain(decimal_limit - 5..decimal_limit + 3000)
                .collect();
            for n in probe {
                let Ok(base) = base_name(&prefix, n) else {
                    // Only once even the letter encoding has run out of room.
                    assert!(
                        n >= decimal_limit + 26u64.pow(budget as u32 - 1),
                        "pid {pid} n {n}"
                    );
                    continue;
                };
                let tail = &base[prefix.len()..];
                if n < decimal_limit {
                    assert_eq!(tail, n.to_string());
                } else {
                    assert!(tail.bytes().all(|b| b.is_ascii_lowercase()), "{base}");
                }
                for side in ['a', 'b'] {
                    let name = format!("{base}{side}");
                    assert!(name.len() <= IFNAME_MAX, "{name} too long");
                    assert!(seen.insert(name.clone()), "{name} repeated");
                }
            }
        }
    }

    #[test]
    fn prefix_rules() {
        check_prefix(&process_prefix()).unwrap();
        check_prefix(&tagged_prefix("b")).unwrap();
        check_prefix("nmbench-").unwrap();
        // The longest allowed prefix still leaves a counter digit and the side letter.
        let longest = "nmabcdefghijk";
        check_prefix(longest).unwrap();
        assert_eq!(base_name(longest, 9).unwrap().len() + 1, IFNAME_MAX);
        assert!(matches!(
            base_name(longest, 26),
            Err(TestbedError::NoFreeName { counter: 26, .. })
        ));

        for bad in [
            "",
            "xy",
            "nm0x",
            "nm4",
            "nmb1",
            "nmb/x",
            "nm b",
            "nmb:x",
            "nmabcdefghijkl",
        ] {
            let err = check_prefix(bad).unwrap_err();
            assert!(
                matches!(&err, TestbedError::InvalidPrefix { prefix, .. } if prefix == bad),
                "{bad:?}: {err}"
            );
        }
        // A pid-like prefix is fine when it is this process's own.
        assert!(process_prefix().as_bytes()[2].is_ascii_digit());
    }

    #[test]
    fn tagged_prefixes_do_not_overlap_process_prefixes() {
        let tagged = tagged_prefix("b");
        let plain = process_prefix();
        assert!(tagged.starts_with(NAME_STEM) && plain.starts_with(NAME_STEM));
        assert!(!tagged.starts_with(&plain) && !plain.starts_with(&tagged));
        assert_eq!(tagged, format!("nmb{}x", std::process::id()));
    }
}
