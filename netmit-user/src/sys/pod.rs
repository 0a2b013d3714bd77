//! Plain-old-data values from bytes and zeroes, for the `#[repr(C)]` types shared with the
//! eBPF programs (netmit-common). [`aya::Pod`] promises that every bit pattern of such a
//! type is a valid value, which is what makes both operations sound.

/// A `T` read from the start of `bytes` (any alignment); `None` when `bytes` is shorter
/// than a `T`.
pub fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() readable bytes, read_unaligned needs
    // no alignment, and T: Pod accepts any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// An all-zero `T` on the heap (for tables too big for a thread's stack).
pub fn zeroed_box<T: aya::Pod>() -> Box<T> {
    let boxed = Box::<T>::new_zeroed();
    // SAFETY: T: Pod accepts any bit pattern, all-zero bytes included.
    unsafe { boxed.assume_init() }
}

#[cfg(test)]
mod tests {
    use netmit_common::{VERDICT_MAGIC, VerdictRecord};

    use super::*;

    #[test]
    fn reads_need_enough_bytes() {
        let mut bytes = vec![0u8; size_of::<VerdictRecord>() + 1];
        bytes[1..3].copy_from_slice(&VERDICT_MAGIC.to_ne_bytes());
        let rec: VerdictRecord = read(&bytes[1..]).unwrap();
        assert_eq!(rec.magic, VERDICT_MAGIC);
        assert!(read::<VerdictRecord>(&bytes[..size_of::<VerdictRecord>() - 1]).is_none());
        let zero: Box<VerdictRecord> = zeroed_box();
        assert_eq!(zero.magic, 0);
    }
}
