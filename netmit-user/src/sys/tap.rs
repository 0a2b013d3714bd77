//! A non-persistent tap device: it exists while its descriptor is open (`netmit check`
//! probes attach and bind on one, in a private network namespace).

use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
};

use super::IfName;

/// `TUNSETIFF` (include/uapi/linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A tap device, removed by the kernel when dropped.
#[derive(Debug)]
pub struct Tap {
    _file: File,
    name: IfName,
}

impl Tap {
    /// Creates tap device `name` in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// The error of opening `/dev/net/tun` or of `TUNSETIFF` (`EBUSY`: the name is taken).
    pub fn create(name: &IfName) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        // struct ifreq: the name (16 bytes), then the flags.
        let mut ifr = [0u8; 40];
        ifr[..name.as_str().len()].copy_from_slice(name.as_str().as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a 40-byte struct ifreq through the pointer.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap {
            _file: file,
            name: name.clone(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &IfName {
        &self.name
    }
}
