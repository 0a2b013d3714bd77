//! CPU affinity: pinning a thread to CPUs, and the guard that puts the old set back.

use std::io;

/// A set of CPUs as the kernel takes it.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl std::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.cpus()).finish()
    }
}

impl CpuSet {
    /// The set of `cpus`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a CPU at or beyond `CPU_SETSIZE` (1024).
    pub fn of(cpus: &[usize]) -> io::Result<CpuSet> {
        // SAFETY: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "CPU {cpu} is out of range (CPUs go up to {})",
                        libc::CPU_SETSIZE - 1
                    ),
                ));
            }
            // SAFETY: `cpu` is below CPU_SETSIZE, so CPU_SET writes inside the set.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        Ok(CpuSet(set))
    }

    /// The CPUs in the set.
    pub fn cpus(&self) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &self.0) })
            .collect()
    }
}

/// Pins task `tid` (0: the calling thread; a thread id, e.g. of a NAPI kthread) to `set`.
///
/// # Errors
///
/// The error of `sched_setaffinity` (`EINVAL`: no CPU of the set is online).
pub fn pin(tid: u32, set: &CpuSet) -> io::Result<()> {
    // SAFETY: a valid pointer to a whole cpu_set_t.
    if unsafe {
        libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set.0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's CPU set.
///
/// # Errors
///
/// The error of `sched_getaffinity`.
pub fn current() -> io::Result<CpuSet> {
    // SAFETY: an all-zero cpu_set_t is valid storage for the answer.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a whole cpu_set_t; 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(CpuSet(set))
}

/// Pins the calling thread to one CPU until dropped, then puts its old set back.
#[derive(Debug)]
pub struct Pinned(CpuSet);

impl Pinned {
    /// Pins the calling thread to `cpu`.
    ///
    /// # Errors
    ///
    /// As [`CpuSet::of`] and [`pin`].
    pub fn to(cpu: usize) -> io::Result<Pinned> {
        let old = current()?;
        pin(0, &CpuSet::of(&[cpu])?)?;
        Ok(Pinned(old))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = pin(0, &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_and_refuse_huge_cpus() {
        assert_eq!(CpuSet::of(&[0, 3, 5]).unwrap().cpus(), vec![0, 3, 5]);
        assert!(CpuSet::of(&[4096]).is_err());
        let before = current().unwrap().cpus();
        {
            let _p = Pinned::to(before[0]).unwrap();
            assert_eq!(current().unwrap().cpus(), vec![before[0]]);
        }
        assert_eq!(current().unwrap().cpus(), before);
    }
}
