//! Closed-loop slots that lost their request: the decision, apart from the map reads and
//! the sends, so that it can be tested without a kernel.

/// The slots among `(slot, send time of its newest request)` whose request is older than
/// `timeout_ns` at `now_ns` (all times CLOCK_MONOTONIC ns). A send time after `now_ns`
/// (the program wrote it after `now_ns` was read) is not overdue.
pub(crate) fn overdue(
    now_ns: u64,
    sent: impl IntoIterator<Item = (u32, u64)>,
    timeout_ns: u64,
) -> Vec<u32> {
    sent.into_iter()
        .filter(|&(_, t)| now_ns.saturating_sub(t) > timeout_ns)
        .map(|(slot, _)| slot)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slots_older_than_the_timeout() {
        let ms = 1_000_000;
        let now = 1_000 * ms;
        let sent = [
            (0, now - 50 * ms),
            (1, now - 101 * ms),
            (2, now + ms),
            (3, now - 100 * ms),
            (4, 0),
        ];
        assert_eq!(overdue(now, sent, 100 * ms), vec![1, 4]);
        assert!(overdue(now, [], 100 * ms).is_empty());
    }
}
