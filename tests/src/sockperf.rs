//! Reading the summary of Debian's `sockperf` (a latency client nobody here wrote), for
//! the serve tests and the xsk-latency benchmark.

/// What sockperf's summary says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sockperf {
    /// Average latency (half the round trip, as sockperf reports it), µs.
    pub avg_usec: f64,
    /// Replies measured.
    pub observations: u64,
    /// Median latency, µs.
    pub p50: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99: Option<f64>,
}

/// Removes ANSI colour sequences (sockperf colours its summary).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Parses sockperf's summary: `avg-latency=25.135 (std-dev=7.563)`, `Total 30831
/// observations`, `---> percentile 50.000 =   24.732`.
pub fn parse_sockperf(text: &str) -> Option<Sockperf> {
    let text = strip_ansi(text);
    let number_after = |key: &str| -> Option<f64> {
        let at = text.find(key)? + key.len();
        let rest = text[at..].trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let percentile = |p: &str| number_after(&format!("percentile {p} ="));
    // `Total N observations` (not `[Total Run]`).
    let observations = text.lines().find_map(|l| {
        let rest = &l[l.find("Total ")? + "Total ".len()..];
        let (n, tail) = rest.split_once(' ')?;
        tail.starts_with("observations").then(|| n.parse().ok())?
    })?;
    Some(Sockperf {
        avg_usec: number_after("avg-latency=")?,
        observations,
        p50: percentile("50.000"),
        p99: percentile("99.000"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockperf_summary_parses() {
        let text = "sockperf: [Total Run] RunTime=2.000 sec; SentMessages=41629\n\
                    sockperf: \u{1b}[2;35m====> avg-latency=25.135 (std-dev=7.563)\u{1b}[0m\n\
                    sockperf: \u{1b}[2;35mTotal 30831 observations\u{1b}[0m; each percentile contains 308.31 observations\n\
                    sockperf: ---> percentile 99.000 =   38.487\n\
                    sockperf: ---> percentile 50.000 =   27.651\n";
        let s = parse_sockperf(text).unwrap();
        assert_eq!(s.avg_usec, 25.135);
        assert_eq!(s.observations, 30831);
        assert_eq!((s.p50, s.p99), (Some(27.651), Some(38.487)));
        assert!(parse_sockperf("sockperf: No messages were received from the server.").is_none());
    }
}
