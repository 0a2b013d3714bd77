//! napi-get, napi-set and queue-get over the netdev generic-netlink family, and what the
//! running kernel offers (the family's operations and napi-set's attribute policy).

use std::collections::BTreeMap;

use netlink_bindings::{netdev, nlctrl, traits::Pusher, utils};
use netlink_socket2::NetlinkSocket;

use super::{
    super::netdev::{Netdev, Presence},
    KernelSupport, NapiError, NapiInfo, NapiParam, QueueInfo, QueueKind,
    error::{reply_error, request_error},
};

// NETDEV_A_NAPI_* (include/uapi/linux/netdev.h).
pub(super) const ATTR_IFINDEX: u16 = 1;
pub(super) const ATTR_ID: u16 = 2;
pub(super) const ATTR_IRQ: u16 = 3;
pub(super) const ATTR_PID: u16 = 4;
pub(super) const ATTR_DEFER_HARD_IRQS: u16 = 5;
pub(super) const ATTR_GRO_FLUSH_TIMEOUT: u16 = 6;
pub(super) const ATTR_IRQ_SUSPEND_TIMEOUT: u16 = 7;
pub(super) const ATTR_THREADED: u16 = 8;

// NETDEV_CMD_* (include/uapi/linux/netdev.h).
const CMD_QUEUE_GET: u32 = 10;
const CMD_NAPI_GET: u32 = 11;
const CMD_NAPI_SET: u32 = 14;

// CTRL_ATTR_* of the generic-netlink controller (include/uapi/linux/genetlink.h).
const CTRL_ATTR_POLICY: u16 = 8;
const CTRL_ATTR_OP_POLICY: u16 = 10;

pub(super) const FAMILY_HINT: &str = "the netdev netlink family needs Linux 6.3+ (napi-get 6.8, \
                           napi-set 6.13); use the device-wide sysfs files instead";
pub(super) const OP_HINT: &str = "napi-get and queue-get need Linux 6.8+, napi-set 6.13+; use the device-wide \
                       sysfs files instead";

fn parse_u32_attr(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

/// A netlink `uint` (NLA_UINT): 4 or 8 bytes, as `nla_put_uint` chooses.
fn parse_uint_attr(b: &[u8]) -> Option<u64> {
    match b.len() {
        4 => parse_u32_attr(b).map(u64::from),
        8 => Some(u64::from_ne_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// Parses the attributes of one napi-get reply.
fn parse_napi(what: &'static str, buf: &[u8]) -> Result<NapiInfo, NapiError> {
    let bad = |attr| NapiError::BadReply { what, attr };
    let (mut id, mut ifindex) = (None, None);
    let mut info = NapiInfo {
        id: 0,
        ifindex: 0,
        irq: None,
        pid: None,
        defer_hard_irqs: None,
        gro_flush_timeout_ns: None,
        irq_suspend_timeout_ns: None,
        threaded: None,
        rx_queues: Vec::new(),
        tx_queues: Vec::new(),
    };
    let mut pos = 0;
    while let Some((header, body)) = utils::chop_header(buf, &mut pos) {
        match header.r#type {
            ATTR_IFINDEX => ifindex = Some(parse_u32_attr(body).ok_or_else(|| bad("ifindex"))?),
            ATTR_ID => id = Some(parse_u32_attr(body).ok_or_else(|| bad("id"))?),
            ATTR_IRQ => info.irq = Some(parse_u32_attr(body).ok_or_else(|| bad("irq"))?),
            ATTR_PID => info.pid = Some(parse_u32_attr(body).ok_or_else(|| bad("pid"))?),
            ATTR_DEFER_HARD_IRQS => {
                info.defer_hard_irqs =
                    Some(parse_u32_attr(body).ok_or_else(|| bad("defer-hard-irqs"))?)
            }
            ATTR_GRO_FLUSH_TIMEOUT => {
                info.gro_flush_timeout_ns =
                    Some(parse_uint_attr(body).ok_or_else(|| bad("gro-flush-timeout"))?)
            }
            ATTR_IRQ_SUSPEND_TIMEOUT => {
                info.irq_suspend_timeout_ns =
                    Some(parse_uint_attr(body).ok_or_else(|| bad("irq-suspend-timeout"))?)
            }
            ATTR_THREADED => {
                info.threaded = Some(parse_u32_attr(body).ok_or_else(|| bad("threaded"))?)
            }
            _ => {} // newer kernels may add attributes
        }
    }
    info.id = id.ok_or_else(|| bad("id"))?;
    info.ifindex = ifindex.ok_or_else(|| bad("ifindex"))?;
    Ok(info)
}

/// Appends a netlink `uint` attribute: 4 bytes when the value fits, else 8 (the kernel's
/// `nla_get_uint` takes either; the generated `push_*` only writes 4).
fn push_uint(buf: &mut impl Pusher, attr: u16, value: u64) {
    let vec = buf.as_vec_mut();
    match u32::try_from(value) {
        Ok(v) => {
            utils::push_header(vec, attr, 4);
            vec.extend(v.to_ne_bytes());
        }
        Err(_) => {
            utils::push_header(vec, attr, 8);
            vec.extend(value.to_ne_bytes());
        }
    }
}

fn napi_dump(sock: &mut NetlinkSocket, ifindex: Option<u32>) -> Result<Vec<NapiInfo>, NapiError> {
    const WHAT: &str = "napi-get dump";
    let mut req = netdev::Request::new().op_napi_get_dump();
    if let Some(i) = ifindex {
        req.encode().push_ifindex(i);
    }
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let mut out = Vec::new();
    while let Some(msg) = reply.recv() {
        let attrs = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        out.push(parse_napi(WHAT, attrs.get_buf())?);
    }
    Ok(out)
}

fn queue_dump(sock: &mut NetlinkSocket, ifindex: Option<u32>) -> Result<Vec<QueueInfo>, NapiError> {
    const WHAT: &str = "queue-get dump";
    let mut req = netdev::Request::new().op_queue_get_dump();
    if let Some(i) = ifindex {
        req.encode().push_ifindex(i);
    }
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let mut out = Vec::new();
    while let Some(msg) = reply.recv() {
        let q = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        let bad = |attr| NapiError::BadReply { what: WHAT, attr };
        let kind = match q
            .get_type()
            .map(|t| netdev::QueueType::from_value(t.into()))
        {
            Ok(Some(netdev::QueueType::Rx)) => QueueKind::Rx,
            Ok(Some(netdev::QueueType::Tx)) => QueueKind::Tx,
            Ok(None) => continue, // a queue type newer than this code
            Err(_) => return Err(bad("type")),
        };
        out.push(QueueInfo {
            ifindex: q.get_ifindex().map_err(|_| bad("ifindex"))?,
            kind,
            id: q.get_id().map_err(|_| bad("id"))?,
            // Absent when no NAPI services the queue, or the driver does not say (veth).
            napi_id: q.get_napi_id().ok(),
        });
    }
    Ok(out)
}

fn fill_queues(infos: &mut [NapiInfo], queues: &[QueueInfo]) {
    for info in infos.iter_mut() {
        for q in queues.iter().filter(|q| q.napi_id == Some(info.id)) {
            match q.kind {
                QueueKind::Rx => info.rx_queues.push(q.id),
                QueueKind::Tx => info.tx_queues.push(q.id),
            }
        }
        info.rx_queues.sort_unstable();
        info.tx_queues.sort_unstable();
    }
}

/// Fails unless `dev` is still there, in the calling thread's namespace: requests name a
/// device by ifindex, which means another device in another namespace, and a dump for a
/// missing ifindex ends in an error that netlink-socket2 0.3.5 cannot parse.
fn check_dev(dev: &Netdev) -> Result<(), NapiError> {
    match dev.recheck()? {
        Presence::Gone => Err(NapiError::NoSuchIfindex {
            ifindex: dev.ifindex,
        }),
        Presence::Same | Presence::Renamed(_) => Ok(()),
    }
}

/// The configured queues of one interface (queue-get dump), with the NAPI servicing each
/// where the driver links them.
pub fn queues(dev: &Netdev) -> Result<Vec<QueueInfo>, NapiError> {
    check_dev(dev)?;
    queue_dump(&mut NetlinkSocket::new(), Some(dev.ifindex))
}

/// The NAPI instances of one interface (napi-get dump filtered by ifindex), with the
/// queues queue-get links to them, sorted by id. Empty when the device has none (a veth
/// without native XDP or GRO).
pub fn list(dev: &Netdev) -> Result<Vec<NapiInfo>, NapiError> {
    check_dev(dev)?;
    let ifindex = dev.ifindex;
    let mut sock = NetlinkSocket::new();
    let mut infos = napi_dump(&mut sock, Some(ifindex))?;
    if !infos.is_empty() {
        let queues = queue_dump(&mut sock, Some(ifindex))?;
        fill_queues(&mut infos, &queues);
    }
    infos.sort_by_key(|n| n.id);
    Ok(infos)
}

/// Every NAPI instance in the calling thread's network namespace, with queues, by id.
pub fn list_all() -> Result<Vec<NapiInfo>, NapiError> {
    let mut sock = NetlinkSocket::new();
    let mut infos = napi_dump(&mut sock, None)?;
    if !infos.is_empty() {
        let queues = queue_dump(&mut sock, None)?;
        fill_queues(&mut infos, &queues);
    }
    infos.sort_by_key(|n| n.id);
    Ok(infos)
}

/// One NAPI instance (napi-get do) of the calling thread's namespace, with its queues.
/// NAPI ids are unique system-wide, but napi-get answers only for the caller's namespace.
pub fn get(napi_id: u32) -> Result<NapiInfo, NapiError> {
    const WHAT: &str = "napi-get";
    let mut sock = NetlinkSocket::new();
    let mut info = {
        let mut req = netdev::Request::new().op_napi_get_do();
        req.encode().push_id(napi_id);
        let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
        let attrs = reply
            .recv_one()
            .map_err(|e| reply_error(WHAT, e, Some(napi_id), None))?;
        parse_napi(WHAT, attrs.get_buf())?
    };
    let queues = queue_dump(&mut sock, Some(info.ifindex))?;
    fill_queues(std::slice::from_mut(&mut info), &queues);
    Ok(info)
}

/// Sets one parameter of one NAPI instance (napi-set). The value is checked against
/// [`NapiParam::max`] first, and nothing is sent when it is out of range; a value the
/// running kernel's narrower policy rejects comes back as [`NapiError::OutOfRange`] with
/// the kernel's bound, also with nothing changed.
pub fn set(napi_id: u32, param: NapiParam, value: u64) -> Result<(), NapiError> {
    const WHAT: &str = "napi-set";
    param.validate(value)?;
    let mut req = netdev::Request::new().op_napi_set_do();
    {
        let mut enc = req.encode().push_id(napi_id);
        match param {
            // validate() bounded both to u32.
            NapiParam::DeferHardIrqs => enc = enc.push_defer_hard_irqs(value as u32),
            NapiParam::Threaded => enc = enc.push_threaded(value as u32),
            NapiParam::GroFlushTimeout | NapiParam::IrqSuspendTimeout => {
                push_uint(&mut enc, param.attr(), value)
            }
        }
        enc.end_nested();
    }
    let mut sock = NetlinkSocket::new();
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    reply
        .recv_ack()
        .map_err(|e| reply_error(WHAT, e, Some(napi_id), Some((param, value))))?;
    log::debug!("napi {napi_id}: {} = {value}", param.name());
    Ok(())
}

/// The current value of one parameter of one NAPI instance (over [`get`]);
/// [`NapiError::NotSupported`] when the kernel does not report it.
pub fn read(napi_id: u32, param: NapiParam) -> Result<u64, NapiError> {
    get(napi_id)?
        .value(param)
        .ok_or_else(|| NapiError::NotSupported {
            what: format!("napi-get attribute {}", param.name()),
            hint: param.requirement(),
        })
}

/// Whether per-NAPI settings work through netlink here: the netdev family has napi-get and
/// napi-set, and a napi-get dump succeeds. Callers use the device-wide sysfs files when
/// this is false.
pub fn napi_netlink_supported() -> bool {
    match kernel_support() {
        Ok(k) if k.napi_get && k.napi_set => {}
        Ok(_) => return false,
        Err(e) => {
            log::warn!("probing netdev netlink: {e}");
            return false;
        }
    }
    match napi_dump(&mut NetlinkSocket::new(), None) {
        Ok(_) => true,
        Err(NapiError::NotSupported { .. }) => false,
        Err(e) => {
            // Not a missing feature: let the real request report it.
            log::warn!("probing napi-get: {e}");
            true
        }
    }
}

/// What the running kernel offers (see [`KernelSupport`]). A kernel without the netdev
/// family gives all-false, not an error.
pub fn kernel_support() -> Result<KernelSupport, NapiError> {
    const WHAT: &str = "getfamily netdev";
    let mut out = KernelSupport::default();
    let mut sock = NetlinkSocket::new();
    {
        let mut req = nlctrl::Request::new().op_getfamily_do();
        req.encode().push_family_name_bytes(b"netdev");
        let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
        let attrs = match reply.recv_one() {
            Ok(a) => a,
            Err(e) if e.as_io_error().raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(reply_error(WHAT, e, None, None)),
        };
        out.netdev_family = true;
        if let Ok(ops) = attrs.get_ops() {
            for op in ops {
                match op.get_id() {
                    Ok(CMD_NAPI_GET) => out.napi_get = true,
                    Ok(CMD_NAPI_SET) => out.napi_set = true,
                    Ok(CMD_QUEUE_GET) => out.queue_get = true,
                    _ => {}
                }
            }
        }
    }
    if out.napi_set {
        match napi_set_policy(&mut sock) {
            Ok(max) => out.set_max = max,
            // Only a refinement: kernels without CTRL_CMD_GETPOLICY still work.
            Err(e) => log::debug!("reading the napi-set policy: {e}"),
        }
    }
    Ok(out)
}

/// napi-set's attribute policy (CTRL_CMD_GETPOLICY for one op): parameter -> max value.
fn napi_set_policy(sock: &mut NetlinkSocket) -> Result<BTreeMap<NapiParam, u64>, NapiError> {
    const WHAT: &str = "getpolicy netdev napi-set";
    let mut req = nlctrl::Request::new().op_getpolicy_dump();
    req.encode()
        .push_family_name_bytes(b"netdev")
        .push_op(CMD_NAPI_SET);
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    // Policies are nested [policy index][attribute type] -> policy attributes; the op's
    // do-policy index comes in a separate message.
    let mut policies: BTreeMap<(u16, u16), u64> = BTreeMap::new();
    let mut do_policy = 0u16;
    while let Some(msg) = reply.recv() {
        let msg = msg.map_err(|e| reply_error(WHAT, e, None, None))?;
        for (header, body) in utils::IterableChunks::new(msg.get_buf()) {
            match header.r#type {
                CTRL_ATTR_POLICY => {
                    for (idx, attrs) in utils::IterableChunks::new(body) {
                        for (attr, pol) in utils::IterableChunks::new(attrs) {
                            if let Ok(max) = nlctrl::PolicyAttrs::new(pol).get_max_value_u() {
                                policies.insert((idx.r#type, attr.r#type), max);
                            }
                        }
                    }
                }
                CTRL_ATTR_OP_POLICY => {
                    for (_op, pol) in utils::IterableChunks::new(body) {
                        if let Ok(idx) = nlctrl::OpPolicyAttrs::new(pol).get_do() {
                            do_policy = idx as u16;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(NapiParam::ALL
        .into_iter()
        .filter_map(|p| policies.get(&(do_policy, p.attr())).map(|&max| (p, max)))
        .collect())
}

/// The device's XDP feature flags (netdev dev-get `xdp-features`, Linux 6.3+): bit 0 basic
/// XDP in the driver, bit 1 redirect, bit 3 AF_XDP zero-copy (`NETDEV_XDP_ACT_*`).
pub fn xdp_features(dev: &Netdev) -> Result<u64, NapiError> {
    const WHAT: &str = "dev-get";
    check_dev(dev)?;
    let ifindex = dev.ifindex;
    let mut sock = NetlinkSocket::new();
    let mut req = netdev::Request::new().op_dev_get_do();
    req.encode().push_ifindex(ifindex);
    let mut reply = sock.request(&req).map_err(|e| request_error(WHAT, e))?;
    let attrs = reply
        .recv_one()
        .map_err(|e| reply_error(WHAT, e, None, None))?;
    attrs
        .get_xdp_features()
        .map_err(|_| NapiError::NotSupported {
            what: "xdp-features in dev-get".into(),
            hint: "the netdev family reports XDP features from Linux 6.3",
        })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn attr(buf: &mut Vec<u8>, ty: u16, body: &[u8]) {
        utils::push_header(buf, ty, body.len() as u16);
        buf.extend_from_slice(body);
    }

    #[test]
    fn napi_reply_parsing_handles_8_byte_uints() {
        let mut buf = Vec::new();
        attr(&mut buf, ATTR_ID, &8193u32.to_ne_bytes());
        attr(&mut buf, ATTR_IFINDEX, &7u32.to_ne_bytes());
        attr(&mut buf, ATTR_DEFER_HARD_IRQS, &100u32.to_ne_bytes());
        attr(
            &mut buf,
            ATTR_GRO_FLUSH_TIMEOUT,
            &5_000_000_000u64.to_ne_bytes(),
        );
        attr(
            &mut buf,
            ATTR_IRQ_SUSPEND_TIMEOUT,
            &20_000_000u32.to_ne_bytes(),
        );
        attr(&mut buf, ATTR_THREADED, &1u32.to_ne_bytes());
        attr(&mut buf, 99, &[1, 2, 3, 4]); // unknown, newer kernel
        let info = parse_napi("test", &buf).unwrap();
        assert_eq!((info.id, info.ifindex), (8193, 7));
        assert_eq!(info.gro_flush_timeout_ns, Some(5_000_000_000));
        assert_eq!(info.irq_suspend_timeout_ns, Some(20_000_000));
        assert_eq!(info.value(NapiParam::Threaded), Some(1));
        assert_eq!((info.irq, info.pid), (None, None));

        let mut short = Vec::new();
        attr(&mut short, ATTR_IFINDEX, &7u32.to_ne_bytes());
        assert!(matches!(
            parse_napi("test", &short),
            Err(NapiError::BadReply { attr: "id", .. })
        ));
        attr(&mut short, ATTR_ID, &1u32.to_ne_bytes());
        attr(&mut short, ATTR_GRO_FLUSH_TIMEOUT, &[1, 2]);
        assert!(matches!(
            parse_napi("test", &short),
            Err(NapiError::BadReply {
                attr: "gro-flush-timeout",
                ..
            })
        ));

        let mut pushed = Vec::new();
        push_uint(&mut pushed, ATTR_GRO_FLUSH_TIMEOUT, 200_000);
        push_uint(&mut pushed, ATTR_IRQ_SUSPEND_TIMEOUT, 1 << 40);
        attr(&mut pushed, ATTR_ID, &3u32.to_ne_bytes());
        attr(&mut pushed, ATTR_IFINDEX, &3u32.to_ne_bytes());
        let back = parse_napi("test", &pushed).unwrap();
        assert_eq!(back.gro_flush_timeout_ns, Some(200_000));
        assert_eq!(back.irq_suspend_timeout_ns, Some(1 << 40));
    }
}
