//! Small helpers for errors that are reported as text (probe results, restore reports).

/// An error and all its sources, joined with `: ` (what anyhow's `{:#}` prints), for
/// places that keep an error as a string.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
