//! A minimal TCP transport for shard pipelines: a server that exposes a
//! [`ShardNode`], and a client that drives a chain of them. It is the
//! demonstration and test harness of the shard API, meant for loopback and
//! trusted networks: it has no authentication or encryption. The framing is
//! described in `docs/frames.md`.
//!
//! A server bounds what a peer can make it hold: a frame no larger than
//! the node can use ([`max_request_frame_len`]), read as its bytes arrive
//! rather than allocated as announced; a read and a write timeout; and a
//! number of connections served at once ([`ServeLimits`]).
//!
//! The client keeps every input it sent to each hop, so when a node dies it
//! reconnects (to a replacement at the same address), replays the session's
//! history into it, and goes on: the outputs are bit-identical because the
//! shards are deterministic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::digest::Digest;
use super::frame::{Frame, FrameKind, CHECKSUM_LEN, HEADER_LEN, MAX_PAYLOAD};
use super::node::ShardNode;
use crate::{Error, Result};

const OP_FORWARD: u8 = 1;
const OP_TRUNCATE: u8 = 2;
const OP_CLOSE: u8 = 3;
const OP_INFO: u8 = 4;
const MAX_MESSAGE: u32 = 1 << 20;

/// Limits of a server against peers that announce more than they send,
/// hold connections open, or open many. Frame sizes are bounded by the node
/// itself ([`max_request_frame_len`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Most connections served at once; one more is answered with an error
    /// and closed.
    pub max_connections: usize,
    /// Longest wait for a peer's next bytes, between requests too; a
    /// connection that stays silent longer is closed.
    pub read_timeout: Duration,
    /// Longest wait for a peer to take a reply's bytes.
    pub write_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 64,
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Largest request frame `node` can use, in encoded bytes: a forward takes
/// at most a session's context of rows, each of the node's input width in
/// the widest dtype (4 bytes).
pub fn max_request_frame_len(node: &ShardNode) -> usize {
    let payload = (node.limits().n_ctx as u64)
        .saturating_mul(node.input_width() as u64)
        .saturating_mul(4)
        .min(MAX_PAYLOAD);
    HEADER_LEN + payload as usize + CHECKSUM_LEN
}

/// The encoded length a frame header announces, if it is at most
/// `max_len`.
fn frame_len(header: &[u8; HEADER_LEN], max_len: usize) -> Result<usize> {
    let total = Frame::length_from_header(header)?;
    if total > max_len {
        return Err(Error::FrameMalformed {
            field: "payload length",
            reason: format!("a frame of {total} bytes exceeds the limit of {max_len}"),
        });
    }
    Ok(total)
}

/// The bytes of a whole frame of at most `max_len` bytes. The outer error is
/// the connection's; the inner one refuses the header, whose body is then
/// left unread (the stream is out of step). The buffer grows with the bytes
/// that arrive, so a peer that announces much and sends little costs little.
fn read_frame_bytes(
    s: &mut impl Read,
    max_len: usize,
) -> std::io::Result<std::result::Result<Vec<u8>, Error>> {
    let mut header = [0u8; HEADER_LEN];
    s.read_exact(&mut header)?;
    let total = match frame_len(&header, max_len) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let mut buf = Vec::with_capacity(total.min(1 << 16));
    buf.extend_from_slice(&header);
    let rest = (total - HEADER_LEN) as u64;
    if s.take(rest).read_to_end(&mut buf)? as u64 != rest {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Ok(buf))
}

/// A whole frame of at most `max_len` bytes: the outer error is the
/// connection's, the inner one the frame's.
fn read_frame(
    s: &mut impl Read,
    max_len: usize,
) -> std::io::Result<std::result::Result<Frame, Error>> {
    Ok(read_frame_bytes(s, max_len)?.and_then(|b| Frame::decode(&b)))
}

fn read_u64(s: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn reply_err(s: &mut impl Write, msg: &str) -> std::io::Result<()> {
    let m = msg.as_bytes();
    let m = &m[..m.len().min(MAX_MESSAGE as usize)];
    s.write_all(&[1])?;
    s.write_all(&(m.len() as u32).to_le_bytes())?;
    s.write_all(m)
}

/// Description of a node, as `info` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub digest: Digest,
    pub layer_start: u32,
    pub layer_end: u32,
    pub n_layer: u32,
}

fn info_bytes(node: &ShardNode) -> Vec<u8> {
    let mut b = node.digest().0.to_vec();
    let l = node.model().layers();
    for v in [
        l.start as u32,
        l.end as u32,
        node.model().config().n_layer as u32,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

fn handle(
    node: &ShardNode,
    mut s: TcpStream,
    limits: &ServeLimits,
    max_frame: usize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(limits.read_timeout))?;
    s.set_write_timeout(Some(limits.write_timeout))?;
    loop {
        let mut op = [0u8; 1];
        match s.read_exact(&mut op) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        match op[0] {
            OP_FORWARD => {
                let body = match read_frame_bytes(&mut s, max_frame)? {
                    Ok(b) => b,
                    Err(e) => {
                        // The body is left unread, so the stream is out of
                        // step: answer, then end the connection.
                        reply_err(&mut s, &e.to_string())?;
                        return s.flush();
                    }
                };
                match Frame::decode(&body).and_then(|f| node.forward(&f)) {
                    Ok(r) => {
                        s.write_all(&[0])?;
                        s.write_all(&r.frame.encode())?;
                    }
                    Err(e) => reply_err(&mut s, &e.to_string())?,
                }
            }
            OP_TRUNCATE => {
                let (id, pos) = (read_u64(&mut s)?, read_u64(&mut s)?);
                match node.truncate(id, pos as usize) {
                    Ok(()) => s.write_all(&[0])?,
                    Err(e) => reply_err(&mut s, &e.to_string())?,
                }
            }
            OP_CLOSE => {
                let id = read_u64(&mut s)?;
                match node.close(id) {
                    Ok(()) => s.write_all(&[0])?,
                    Err(e) => reply_err(&mut s, &e.to_string())?,
                }
            }
            OP_INFO => {
                let b = info_bytes(node);
                s.write_all(&[0])?;
                s.write_all(&(b.len() as u32).to_le_bytes())?;
                s.write_all(&b)?;
            }
            other => {
                reply_err(&mut s, &format!("unknown operation {other}"))?;
                return Ok(());
            }
        }
        s.flush()?;
    }
}

/// [`serve_with`] the default [`ServeLimits`].
pub fn serve(node: Arc<ShardNode>, listener: TcpListener) -> std::io::Result<()> {
    serve_with(node, listener, ServeLimits::default())
}

/// One served connection, counted while it lives.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answer a connection over the limit with an error and close it.
fn refuse(mut s: TcpStream, limit: usize) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = reply_err(&mut s, &format!("too many connections (limit {limit})"));
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// Serve `node` on `listener` until the process ends: one thread per
/// connection, at most `limits.max_connections` of them; a broken
/// connection ends only itself, and a failed accept (say, out of file
/// descriptors) is waited out rather than ending the server.
pub fn serve_with(
    node: Arc<ShardNode>,
    listener: TcpListener,
    limits: ServeLimits,
) -> std::io::Result<()> {
    if limits.max_connections == 0
        || limits.read_timeout.is_zero()
        || limits.write_timeout.is_zero()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "connections and timeouts must be at least 1",
        ));
    }
    let limits = Arc::new(limits);
    let max_frame = max_request_frame_len(&node);
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let s = match conn {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Only this loop adds to `open`, so the check cannot race.
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            refuse(s, limits.max_connections);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let slot = ConnectionSlot(Arc::clone(&open));
        let _ = s.set_nodelay(true);
        let (node, limits) = (Arc::clone(&node), Arc::clone(&limits));
        // A thread that cannot start drops the connection (and its slot).
        let _ = std::thread::Builder::new()
            .name("strata-shard-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = handle(&node, s, &limits, max_frame);
            });
    }
    Ok(())
}

/// A connection to one node.
pub struct NodeClient {
    addr: String,
    stream: Option<TcpStream>,
    timeout: Duration,
}

impl NodeClient {
    pub fn new(addr: &str) -> NodeClient {
        NodeClient {
            addr: addr.to_string(),
            stream: None,
            timeout: Duration::from_secs(120),
        }
    }

    fn net(&self, source: std::io::Error) -> Error {
        Error::Network {
            addr: self.addr.clone(),
            source,
        }
    }

    fn stream(&mut self) -> Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| self.net(e))?;
            let _ = s.set_nodelay(true);
            s.set_read_timeout(Some(self.timeout))
                .map_err(|e| self.net(e))?;
            s.set_write_timeout(Some(self.timeout))
                .map_err(|e| self.net(e))?;
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Send `request`, read the status byte; on an error reply, the message.
    fn call(&mut self, request: &[u8]) -> Result<()> {
        let addr = self.addr.clone();
        let r = (|| -> std::io::Result<std::result::Result<(), String>> {
            let s = self
                .stream()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            s.write_all(request)?;
            let mut status = [0u8; 1];
            s.read_exact(&mut status)?;
            if status[0] == 0 {
                return Ok(Ok(()));
            }
            let mut len = [0u8; 4];
            s.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len).min(MAX_MESSAGE);
            let mut m = vec![0u8; len as usize];
            s.read_exact(&mut m)?;
            Ok(Err(String::from_utf8_lossy(&m).into_owned()))
        })();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Remote { addr, message }),
            Err(e) => {
                self.stream = None;
                Err(self.net(e))
            }
        }
    }

    pub fn info(&mut self) -> Result<NodeInfo> {
        self.call(&[OP_INFO])?;
        let s = self.stream()?;
        let mut len = [0u8; 4];
        let mut b = [0u8; 44];
        let r = s.read_exact(&mut len).and_then(|_| s.read_exact(&mut b));
        r.map_err(|e| self.net(e))?;
        let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut d = [0u8; 32];
        d.copy_from_slice(&b[..32]);
        Ok(NodeInfo {
            digest: Digest(d),
            layer_start: u(32),
            layer_end: u(36),
            n_layer: u(40),
        })
    }

    pub fn forward(&mut self, frame: &Frame) -> Result<Frame> {
        let mut req = vec![OP_FORWARD];
        req.extend_from_slice(&frame.encode());
        self.call(&req)?;
        let s = self.stream()?;
        match read_frame(s, usize::MAX) {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => {
                // A refused header leaves the stream out of step.
                self.stream = None;
                Err(e)
            }
            Err(e) => {
                self.stream = None;
                Err(self.net(e))
            }
        }
    }

    pub fn truncate(&mut self, session: u64, pos: u64) -> Result<()> {
        let mut req = vec![OP_TRUNCATE];
        req.extend_from_slice(&session.to_le_bytes());
        req.extend_from_slice(&pos.to_le_bytes());
        self.call(&req)
    }

    pub fn close(&mut self, session: u64) -> Result<()> {
        let mut req = vec![OP_CLOSE];
        req.extend_from_slice(&session.to_le_bytes());
        self.call(&req)
    }
}

/// A client driving one session through a chain of nodes, with replay.
pub struct Pipeline {
    hops: Vec<NodeClient>,
    digest: Digest,
    session: u64,
    /// Per hop, every input frame it was sent (replayed into a replacement).
    history: Vec<Vec<Frame>>,
    /// How long to keep trying to reach a replacement for a failed node.
    pub reconnect_for: Duration,
    /// Replays performed (for reporting).
    pub replays: usize,
}

impl Pipeline {
    /// Connect to `addrs` in order and check they form one model's chain.
    pub fn connect(addrs: &[String], session: u64) -> Result<Pipeline> {
        let mut hops: Vec<NodeClient> = addrs.iter().map(|a| NodeClient::new(a)).collect();
        let infos: Vec<NodeInfo> = hops.iter_mut().map(|h| h.info()).collect::<Result<_>>()?;
        let first = infos
            .first()
            .ok_or_else(|| Error::invalid("route", "no nodes given"))?;
        let mut expect = 0;
        for (i, (inf, a)) in infos.iter().zip(addrs).enumerate() {
            if inf.digest != first.digest {
                return Err(Error::invalid(
                    "route",
                    format!("{a} serves another model ({})", inf.digest),
                ));
            }
            if inf.layer_start != expect {
                return Err(Error::invalid(
                    "route",
                    format!(
                        "hop {i} ({a}) starts at layer {}, expected {expect}",
                        inf.layer_start
                    ),
                ));
            }
            expect = inf.layer_end;
        }
        if expect != first.n_layer {
            return Err(Error::invalid(
                "route",
                format!("the chain ends at layer {expect} of {}", first.n_layer),
            ));
        }
        Ok(Pipeline {
            history: vec![Vec::new(); hops.len()],
            hops,
            digest: first.digest,
            session,
            reconnect_for: Duration::from_secs(30),
            replays: 0,
        })
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Evaluate `tokens` at `pos`; returns the last token's logits.
    pub fn forward_tokens(&mut self, pos: u64, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut frame = Frame::tokens(self.digest, self.session, pos, tokens);
        for i in 0..self.hops.len() {
            // Inputs from `pos` on replace what the hop saw before (rollback).
            self.history[i].retain(|f| f.position < pos);
            let out = self.hop(i, &frame)?;
            self.history[i].push(frame);
            frame = out;
        }
        if frame.kind != FrameKind::Logits {
            return Err(Error::invalid(
                "route",
                "the last hop did not return logits",
            ));
        }
        frame.values()
    }

    fn hop(&mut self, i: usize, frame: &Frame) -> Result<Frame> {
        match self.hops[i].forward(frame) {
            Err(Error::Network { .. }) => {}
            other => return other,
        }
        // The node is gone: wait for a replacement, replay, retry.
        let deadline = Instant::now() + self.reconnect_for;
        loop {
            match self.replay(i) {
                Ok(()) => break,
                Err(Error::Network { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(e),
            }
        }
        self.replays += 1;
        self.hops[i].forward(frame)
    }

    /// Send hop `i` its whole recorded history again, from position 0.
    fn replay(&mut self, i: usize) -> Result<()> {
        let info = self.hops[i].info()?;
        if info.digest != self.digest {
            return Err(Error::invalid(
                "route",
                "the replacement node serves another model",
            ));
        }
        for f in self.history[i].clone() {
            self.hops[i].forward(&f)?;
        }
        Ok(())
    }

    /// Close the session on every node (best effort).
    pub fn close(&mut self) {
        for h in &mut self.hops {
            let _ = h.close(self.session);
        }
    }
}
