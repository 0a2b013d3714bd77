//! The device-wide NAPI defaults in sysfs (`/sys/class/net/IFACE/napi_defer_hard_irqs`,
//! `gro_flush_timeout`, `threaded`): the fallback where per-NAPI netlink is missing.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::{
    super::netdev::{Netdev, Presence},
    DeviceParam, NapiError,
};

const SYS_CLASS_NET: &str = "/sys/class/net";

/// `/sys/class/net/NAME` of the device under its current name, after checking that it
/// shows the device of the calling thread's network namespace: sysfs lists the devices of
/// the namespace that mounted it, which need not be the caller's, and the same name or
/// index may be another device there. (A device with the same name *and* index in both,
/// such as `lo`, cannot be told apart this way.)
pub(super) fn sysfs_dir(dev: &Netdev) -> Result<PathBuf, NapiError> {
    let name = match dev.recheck()? {
        Presence::Same => dev.name.clone(),
        Presence::Renamed(name) => name,
        Presence::Gone => {
            return Err(NapiError::NoSuchIfindex {
                ifindex: dev.ifindex,
            });
        }
    };
    // A validated name stays inside /sys/class/net.
    let dir = Path::new(SYS_CLASS_NET).join(name.as_str());
    let index_file = dir.join("ifindex");
    match fs::read_to_string(&index_file) {
        Ok(text) if text.trim().parse::<u32>().ok() == Some(dev.ifindex) => Ok(dir),
        Ok(_) => Err(NapiError::SysfsOtherNamespace { iface: name.into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(NapiError::SysfsOtherNamespace { iface: name.into() })
        }
        Err(source) => Err(NapiError::Sysfs {
            path: index_file,
            value: None,
            source,
        }),
    }
}

/// Reads a device-wide default from sysfs.
pub fn device_read(dev: &Netdev, param: DeviceParam) -> Result<u64, NapiError> {
    let path = sysfs_dir(dev)?.join(param.file());
    let text = fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NapiError::NotSupported {
            what: format!("sysfs {}", param.file()),
            hint: match param {
                DeviceParam::DeferHardIrqs => "napi_defer_hard_irqs needs Linux 5.7 or later",
                DeviceParam::GroFlushTimeout => "gro_flush_timeout needs Linux 3.19 or later",
                DeviceParam::Threaded => "the threaded file needs Linux 5.12 or later",
            },
        },
        _ => NapiError::Sysfs {
            path: path.clone(),
            value: None,
            source,
        },
    })?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| NapiError::SysfsParse {
            path: path.clone(),
            text: text.trim().to_string(),
        })
}

/// Writes a device-wide default to sysfs; the kernel copies it into every NAPI of the
/// device (replacing per-NAPI values). Out-of-range values are refused before writing.
pub fn device_write(dev: &Netdev, param: DeviceParam, value: u64) -> Result<(), NapiError> {
    param.validate(value)?;
    let path = sysfs_dir(dev)?.join(param.file());
    // No O_CREAT: a missing file must not be created.
    let result = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.to_string().as_bytes()));
    result.map_err(|source| match (param, source.raw_os_error()) {
        (DeviceParam::Threaded, Some(libc::EIO | libc::EOPNOTSUPP)) => NapiError::NoNapi {
            iface: dev.name.to_string(),
        },
        (_, Some(libc::EPERM | libc::EACCES)) => NapiError::PermissionDenied {
            what: "writing a sysfs NAPI default",
        },
        _ => NapiError::Sysfs {
            path: path.clone(),
            value: Some(value),
            source,
        },
    })?;
    log::debug!("{dev}: sysfs {} = {value}", param.file());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{netdev::IfName, netns::NetnsId};

    #[test]
    fn vanished_devices_and_bad_values_are_refused() {
        let gone = Netdev {
            netns: NetnsId::current().unwrap(),
            ifindex: u32::MAX - 3,
            name: IfName::new("nmgone9").unwrap(),
        };
        assert!(matches!(
            device_read(&gone, DeviceParam::Threaded),
            Err(NapiError::NoSuchIfindex { .. })
        ));
        assert!(matches!(
            device_write(&gone, DeviceParam::GroFlushTimeout, 1),
            Err(NapiError::NoSuchIfindex { .. })
        ));
        assert!(matches!(
            device_write(&gone, DeviceParam::Threaded, 5),
            Err(NapiError::OutOfRange { .. })
        ));
    }
}
