//! What the library knows about the process's epoll sets: fixed tables of atomics, so that
//! recording a set or a socket takes no lock and allocates nothing, stays consistent in a
//! child after `fork` (no lock can be held across it), and the reporter thread can read
//! them at any time.
//!
//! Sockets are indexed by their fd number (dense small integers), so adding and removing
//! one is O(1), as it happens once per connection in servers that add and delete a socket
//! per client. A socket in two epoll sets is counted in the last one it was added to; fds
//! at or above [`MAX_MEMBERS`] and sets beyond [`MAX_SETS`] are not tracked: the state file
//! then undercounts, the application never notices.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The key of a free slot.
pub const FREE: i32 = -1;

/// Epoll sets tracked at most.
pub const MAX_SETS: usize = 1024;
/// Socket fds tracked: 0..MAX_MEMBERS.
pub const MAX_MEMBERS: usize = 8192;

/// A socket added to an epoll set, at the index of its fd.
pub struct MemberSlot {
    /// The epoll set it was added to, or [`FREE`].
    pub epfd: AtomicI32,
    /// The socket's inode (tells a reused fd number from the socket that was added).
    pub ino: AtomicU64,
}

/// Both tables.
pub struct Tables {
    /// Configured epoll sets (their fds, or [`FREE`]).
    pub sets: [AtomicI32; MAX_SETS],
    /// Sockets in them, by fd.
    pub members: [MemberSlot; MAX_MEMBERS],
}

#[allow(clippy::declare_interior_mutable_const)]
const SET: AtomicI32 = AtomicI32::new(FREE);
#[allow(clippy::declare_interior_mutable_const)]
const MEMBER: MemberSlot = MemberSlot {
    epfd: AtomicI32::new(FREE),
    ino: AtomicU64::new(0),
};

/// The process's tables.
pub static TABLES: Tables = Tables::new();

impl Tables {
    /// Empty tables.
    pub const fn new() -> Tables {
        Tables {
            sets: [SET; MAX_SETS],
            members: [MEMBER; MAX_MEMBERS],
        }
    }

    /// Records a configured epoll set; a reused fd number starts with no members.
    pub fn add_set(&self, epfd: i32) {
        for m in &self.members {
            let _ = m
                .epfd
                .compare_exchange(epfd, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
        if self.has_set(epfd) {
            return;
        }
        for s in &self.sets {
            if s.compare_exchange(FREE, epfd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Whether `epfd` is a set the library configured.
    pub fn has_set(&self, epfd: i32) -> bool {
        self.sets.iter().any(|s| s.load(Ordering::Acquire) == epfd)
    }

    /// Forgets a set (its fd is no longer an epoll instance).
    pub fn remove_set(&self, epfd: i32) {
        for s in &self.sets {
            let _ = s.compare_exchange(epfd, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Records socket `fd` (inode `ino`) as a member of `epfd`.
    pub fn add_member(&self, epfd: i32, fd: i32, ino: u64) {
        if let Some(m) = usize::try_from(fd).ok().and_then(|i| self.members.get(i)) {
            m.ino.store(ino, Ordering::Relaxed);
            m.epfd.store(epfd, Ordering::Release);
        }
    }

    /// Forgets `fd` as a member of `epfd` (EPOLL_CTL_DEL).
    pub fn remove_member(&self, epfd: i32, fd: i32) {
        if let Some(m) = usize::try_from(fd).ok().and_then(|i| self.members.get(i)) {
            let _ = m
                .epfd
                .compare_exchange(epfd, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The member at `fd`: (epoll fd, inode), read consistently.
    pub fn member(&self, fd: usize) -> Option<(i32, u64)> {
        let m = self.members.get(fd)?;
        let epfd = m.epfd.load(Ordering::Acquire);
        if epfd == FREE {
            return None;
        }
        let ino = m.ino.load(Ordering::Acquire);
        (m.epfd.load(Ordering::Acquire) == epfd).then_some((epfd, ino))
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members_of(t: &Tables, epfd: i32) -> Vec<(usize, u64)> {
        (0..MAX_MEMBERS)
            .filter_map(|fd| t.member(fd).filter(|m| m.0 == epfd).map(|m| (fd, m.1)))
            .collect()
    }

    #[test]
    fn sets_and_members_come_and_go() {
        let t = Box::new(Tables::new());
        t.add_set(5);
        t.add_set(5);
        assert!(t.has_set(5));
        assert_eq!(
            t.sets
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) == 5)
                .count(),
            1
        );
        t.add_member(5, 7, 100);
        t.add_member(5, 8, 101);
        assert_eq!(members_of(&t, 5), vec![(7, 100), (8, 101)]);
        t.remove_member(5, 7);
        t.remove_member(6, 8);
        assert_eq!(
            members_of(&t, 5),
            vec![(8, 101)],
            "only the set's own member goes"
        );
        // A new epoll instance with a reused fd number starts empty.
        t.add_set(5);
        assert!(members_of(&t, 5).is_empty());
        t.remove_set(5);
        assert!(!t.has_set(5));
    }

    #[test]
    fn out_of_range_fds_are_ignored() {
        let t = Box::new(Tables::new());
        t.add_member(3, -1, 1);
        t.add_member(3, MAX_MEMBERS as i32, 1);
        t.remove_member(3, i32::MAX);
        assert!(members_of(&t, 3).is_empty());
        assert!(t.member(MAX_MEMBERS).is_none());
    }
}
