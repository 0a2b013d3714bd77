//! Test support for netmit: packet crafting, an independent reference classifier, and
//! network-namespace testbeds. The integration tests themselves live in `tests/tests/`.

pub mod campaign;
pub mod kernel;
pub mod netmit;
pub mod packet;
pub mod recv;
pub mod reference;
pub mod sockperf;
pub mod support;
pub mod testbed;
