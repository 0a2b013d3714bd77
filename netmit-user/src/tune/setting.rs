//! One changeable setting, whatever its mechanism: the unit the journal records and
//! restores, and what `tune set`, profiles and the daemon apply.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sys::link::{self as kernel, KernelError};
use crate::sys::{
    coalesce::{self, CoalesceError, CoalesceParam},
    napi::{self, DeviceParam, NapiError, NapiParam},
    sysctl::{Sysctl, SysctlError},
};

/// A setting netmit can read and write.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    /// A system-wide sysctl.
    Sysctl {
        /// Which.
        sysctl: Sysctl,
    },
    /// A parameter of one NAPI instance (netdev netlink).
    Napi {
        /// Interface the NAPI belongs to (for display and per-interface restore).
        iface: String,
        /// NAPI id.
        napi_id: u32,
        /// Which parameter.
        param: NapiParam,
    },
    /// A device-wide default in sysfs (applies to every NAPI of the device).
    Device {
        /// Interface.
        iface: String,
        /// Which parameter.
        param: DeviceParam,
    },
    /// A NIC interrupt-coalescing parameter (ethtool netlink).
    Coalesce {
        /// Interface.
        iface: String,
        /// Which parameter.
        param: CoalesceParam,
    },
}

/// Errors reading or writing a setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    /// Interface lookup failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// NAPI or sysfs access failed.
    #[error(transparent)]
    Napi(#[from] NapiError),
    /// Coalescing access failed.
    #[error(transparent)]
    Coalesce(#[from] CoalesceError),
    /// Sysctl access failed.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// Value out of the u32 range a coalescing parameter takes.
    #[error("{value} is out of range for {param} (0..={})", u32::MAX)]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// Value.
        value: u64,
    },
}

impl Setting {
    /// The interface the setting belongs to, if any.
    pub fn iface(&self) -> Option<&str> {
        match self {
            Setting::Sysctl { .. } => None,
            Setting::Napi { iface, .. }
            | Setting::Device { iface, .. }
            | Setting::Coalesce { iface, .. } => Some(iface),
        }
    }

    /// The parameter's name.
    pub fn param_name(&self) -> &'static str {
        match self {
            Setting::Sysctl { sysctl } => sysctl.name(),
            Setting::Napi { param, .. } => param.name(),
            Setting::Device { param, .. } => param.name(),
            Setting::Coalesce { param, .. } => param.name(),
        }
    }

    /// Reads the current value.
    pub fn read(&self) -> Result<u64, SettingError> {
        Ok(match self {
            Setting::Sysctl { sysctl } => sysctl.read()?,
            Setting::Napi { napi_id, param, .. } => napi::read(*napi_id, *param)?,
            Setting::Device { iface, param } => napi::device_read(iface, *param)?,
            Setting::Coalesce { iface, param } => {
                u64::from(coalesce::read(kernel::ifindex(iface)?, *param)?)
            }
        })
    }

    /// Writes a value.
    pub fn write(&self, value: u64) -> Result<(), SettingError> {
        match self {
            Setting::Sysctl { sysctl } => sysctl.write(value)?,
            Setting::Napi { napi_id, param, .. } => napi::set(*napi_id, *param, value)?,
            Setting::Device { iface, param } => napi::device_write(iface, *param, value)?,
            Setting::Coalesce { iface, param } => {
                let v = u32::try_from(value).map_err(|_| SettingError::OutOfRange {
                    param: param.name(),
                    value,
                })?;
                coalesce::set(kernel::ifindex(iface)?, &[(*param, v)])?
            }
        }
        Ok(())
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Sysctl { sysctl } => write!(f, "{}", sysctl.name()),
            Setting::Napi {
                iface,
                napi_id,
                param,
            } => write!(f, "{iface} napi {napi_id} {}", param.name()),
            Setting::Device { iface, param } => write!(f, "{iface} (device-wide) {}", param.name()),
            Setting::Coalesce { iface, param } => write!(f, "{iface} coalesce {}", param.name()),
        }
    }
}
