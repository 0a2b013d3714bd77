//! One changeable setting, whatever its mechanism: the unit the journal records and
//! restores, and what `tune set`, profiles and the daemon apply.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    host::Host,
    sys::{
        Netdev,
        coalesce::{CoalesceError, CoalesceParam},
        napi::{DeviceParam, NapiError, NapiParam},
        sysctl::{Sysctl, SysctlError},
    },
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
        /// The device the NAPI belongs to.
        dev: Netdev,
        /// NAPI id.
        napi_id: u32,
        /// Which parameter.
        param: NapiParam,
    },
    /// A device-wide default in sysfs (applies to every NAPI of the device).
    Device {
        /// The device.
        dev: Netdev,
        /// Which parameter.
        param: DeviceParam,
    },
    /// A NIC interrupt-coalescing parameter (ethtool netlink).
    Coalesce {
        /// The device.
        dev: Netdev,
        /// Which parameter.
        param: CoalesceParam,
    },
}

/// Errors reading or writing a setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
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
    #[error("{value} is out of range for {param}: give 0 to {}", u32::MAX)]
    OutOfRange {
        /// Parameter name.
        param: &'static str,
        /// Value.
        value: u64,
    },
}

impl Setting {
    /// The device the setting belongs to; `None` for a system-wide sysctl.
    pub fn dev(&self) -> Option<&Netdev> {
        match self {
            Setting::Sysctl { .. } => None,
            Setting::Napi { dev, .. }
            | Setting::Device { dev, .. }
            | Setting::Coalesce { dev, .. } => Some(dev),
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
    pub fn read(&self, host: &dyn Host) -> Result<u64, SettingError> {
        Ok(match self {
            Setting::Sysctl { sysctl } => host.sysctl_read(*sysctl)?,
            Setting::Napi { napi_id, param, .. } => host
                .napi_get(*napi_id)?
                .value(*param)
                .ok_or_else(|| NapiError::NotSupported {
                    what: format!("napi-get attribute {}", param.name()),
                    hint: param.requirement(),
                })?,
            Setting::Device { dev, param } => host.device_read(dev, *param)?,
            Setting::Coalesce { dev, param } => {
                let values = host.coalesce_get(dev)?;
                u64::from(values.get(param).copied().ok_or_else(|| {
                    CoalesceError::ParamUnsupported {
                        ifindex: dev.ifindex,
                        iface: dev.to_string(),
                        param: *param,
                        supported: values.keys().map(|p| p.name()).collect(),
                    }
                })?)
            }
        })
    }

    /// Writes a value.
    pub fn write(&self, host: &dyn Host, value: u64) -> Result<(), SettingError> {
        match self {
            Setting::Sysctl { sysctl } => host.sysctl_write(*sysctl, value)?,
            Setting::Napi { napi_id, param, .. } => host.napi_set(*napi_id, *param, value)?,
            Setting::Device { dev, param } => host.device_write(dev, *param, value)?,
            Setting::Coalesce { dev, param } => {
                let v = u32::try_from(value).map_err(|_| SettingError::OutOfRange {
                    param: param.name(),
                    value,
                })?;
                host.coalesce_set(dev, &[(*param, v)])?
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
                dev,
                napi_id,
                param,
            } => write!(f, "{} napi {napi_id} {}", dev.name, param.name()),
            Setting::Device { dev, param } => {
                write!(f, "{} (device-wide) {}", dev.name, param.name())
            }
            Setting::Coalesce { dev, param } => write!(f, "{} coalesce {}", dev.name, param.name()),
        }
    }
}
