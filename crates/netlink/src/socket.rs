//! The blocking request/reply loop on one `NETLINK_ROUTE` socket.

use std::cell::Cell;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use plexus_netns::NetNs;

use crate::error::{Error, Result};

/// Large enough for one datagram of a dump (the kernel sends at most ~32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// An rtnetlink socket bound to the namespace it was opened in.
///
/// Not `Sync` (sequence numbers live in a `Cell`); create one per namespace
/// and thread. Requests are strictly one at a time.
pub struct Handle {
    socket: Socket,
    seq: Cell<u32>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("seq", &self.seq.get())
            .finish()
    }
}

impl Handle {
    /// Opens a socket in the calling thread's current namespace.
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(Error::Socket)?;
        socket.bind_auto().map_err(Error::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::Socket)?;
        // Extended acks only improve kernel messages; older kernels refuse.
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: Cell::new(1),
        })
    }

    /// Opens a socket inside `ns`. Only the `socket(2)` call runs in the
    /// namespace; the handle stays bound to it wherever it is used.
    pub fn open_in(ns: &NetNs) -> Result<Self> {
        plexus_netns::run_in(ns, Self::new)?
    }

    /// Sends a modifying request and waits for the kernel's ack.
    pub(crate) fn ack(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: impl FnOnce() -> String,
    ) -> Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, op, target).map(drop)
    }

    /// Sends a single-object GET and returns the replies.
    pub(crate) fn get(
        &self,
        msg: RouteNetlinkMessage,
        op: &'static str,
        target: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK, op, target)
    }

    /// Sends a dump request and collects every reply until `NLMSG_DONE`.
    pub(crate) fn dump(
        &self,
        msg: RouteNetlinkMessage,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, op, || "(dump)".to_string())
    }

    fn exchange(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(Error::Socket)?;

        let mut replies = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        loop {
            buf.clear();
            self.socket.recv(&mut buf, 0).map_err(Error::Socket)?;
            let mut off = 0;
            while off < buf.len() {
                let chunk = &buf[off..];
                let len = NetlinkBuffer::new_checked(chunk)
                    .map_err(|e| Error::Decode(e.to_string()))?
                    .length() as usize;
                if len == 0 || len > chunk.len() {
                    return Err(Error::Decode(format!("bad message length {len}")));
                }
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&chunk[..len])
                    .map_err(|e| Error::Decode(format!("{op}: {e}")))?;
                off += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    // A stale reply to an earlier request; not ours.
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(Error::from_errno(-code.get(), op, target())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}
