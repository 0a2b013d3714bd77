//! The bad-input campaign of issue 13, kept as data in `tests/data/bad-inputs/` (written by
//! its `generate.py`): loading the files, undoing their escapes, and the one rule every
//! error message must follow.
//!
//! # What a clear message is
//!
//! It names the problem (it is not empty, and not only an error code) and a fix: it says
//! what to write, run or change. [`names_a_fix`] checks the second by looking for the
//! words netmit's messages use for that (`use`, `give`, `set`, `remove`, `run`, an example
//! after `e.g.`, a range after `at most`/`from … to`, ...). A message that only states a
//! fact ("Error reading bytes", "number too large to fit in target type", "failed to fill
//! whole buffer") fails it.

use std::path::PathBuf;

/// The campaign's directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/bad-inputs")
}

/// The entries of one campaign file (comments and blank lines skipped), unescaped.
pub fn load(name: &str) -> Vec<String> {
    load_raw(name).iter().map(|l| unescape(l)).collect()
}

/// The entries of one campaign file as written (escaped, or hex for captures).
pub fn load_raw(name: &str) -> Vec<String> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run generate.py)", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The captures of `captures.txt`, one hex line each (an empty line is an empty file).
pub fn captures() -> Vec<Vec<u8>> {
    let path = dir().join("captures.txt");
    let text = std::fs::read_to_string(&path).expect("captures.txt");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            (0..l.len() / 2)
                .map(|i| u8::from_str_radix(&l[2 * i..2 * i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// Undoes the escapes of the campaign files: `\t`, `\n`, `\s` (a space, for cli.txt),
/// `\\` and `\xNN`; a line `\e` is the empty input.
pub fn unescape(line: &str) -> String {
    let mut out = String::new();
    if line == "\\e" {
        return out;
    }
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).expect("\\xNN")));
            }
            other => panic!("bad escape \\{other:?} in {line:?}"),
        }
    }
    out
}

/// Words and phrases that introduce a fix in netmit's messages (lower case).
const FIX_WORDS: &[&str] = &[
    "use ",
    "give ",
    "set ",
    "remove ",
    "run ",
    "write ",
    "mount ",
    "chmod ",
    "name the",
    "put ",
    "shorten",
    "keep one",
    "capture on",
    "check what",
    "check the",
    "e.g.",
    "look like",
    "at most",
    "at least",
    "from 0 to",
    "expected ",
    "allowed",
    "try ",
    "see `",
    "(see ",
    "without --strict",
];

/// Whether `message` names a fix (see the module docs).
pub fn names_a_fix(message: &str) -> bool {
    let lower = message.to_lowercase();
    FIX_WORDS.iter().any(|w| lower.contains(w))
}

/// Checks a message: not empty, no panic, names a fix. Returns what is wrong.
pub fn judge(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("an empty message".into());
    }
    if message.contains("panicked") || message.contains("RUST_BACKTRACE") {
        return Err(format!("a panic: {message}"));
    }
    if !names_a_fix(message) {
        return Err(format!("names no fix: {message}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_the_fix_rule() {
        assert_eq!(unescape(r"a\tb\nc\sd\\e\x00"), "a\tb\nc d\\e\0");
        assert!(judge("`x` is not a whole number: use decimal digits only").is_ok());
        assert!(judge("Error reading bytes").is_err());
        assert!(judge("number too large to fit in target type").is_err());
        assert!(judge("thread 'main' panicked at src/main.rs").is_err());
        assert!(judge("").is_err());
    }
}
