//! The shard transport against hostile peers on loopback: a frame header
//! announcing more than the node can use is refused before anything that
//! size is allocated, a silent peer is dropped after the read timeout, and
//! connections over the bound are refused while open sessions go on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::quant::GgmlType;
use strata::shard::frame::{HEADER_LEN, MAGIC, VERSION};
use strata::shard::transport::{serve_with, NodeClient, Pipeline, ServeLimits};
use strata::shard::{Digest, Frame, NodeLimits, ShardNode};
use strata::Numerics;

mod common;

/// The system allocator, recording the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// How long a test client waits for an answer before the test fails: far
/// longer than a working server needs, so it only ends a broken run.
const PATIENCE: Duration = Duration::from_secs(20);

fn node() -> Arc<ShardNode> {
    let m = common::tiny_model(GgmlType::Q8_0, 1, Numerics::BatchInvariant);
    let limits = NodeLimits {
        max_sessions: 8,
        n_ctx: 64,
    };
    Arc::new(ShardNode::new(m, limits).unwrap())
}

/// Serve `node` on a loopback port in the background; returns the address.
fn start(node: &Arc<ShardNode>, limits: ServeLimits) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = Arc::clone(node);
    std::thread::spawn(move || serve_with(node, listener, limits));
    addr
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// The server's error reply on `s`, then the end of the connection.
fn error_then_eof(s: &mut TcpStream) -> String {
    let mut status = [0u8; 1];
    s.read_exact(&mut status).expect("an error reply");
    assert_eq!(status[0], 1, "status");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut m = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut m).unwrap();
    assert_eq!(s.read(&mut [0u8; 1]).expect("the server closes"), 0);
    String::from_utf8(m).unwrap()
}

/// Logits for `ids` at `pos` computed here, in a session of its own.
fn local_logits(node: &ShardNode, session: u64, pos: u64, ids: &[u32]) -> Vec<f32> {
    let f = Frame::tokens(node.digest(), session, pos, ids);
    node.forward(&f).unwrap().frame.values().unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// An operation byte and a tokens-frame header announcing `payload` bytes,
/// with no payload behind it.
fn forward_header(digest: Digest, payload: u64) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 3]); // token ids, u32
    b.extend_from_slice(&digest.0);
    b.extend_from_slice(&[0; 8]); // boundary, reserved
    b.extend_from_slice(&[0; 16]); // session, position
    b.extend_from_slice(&((payload / 4) as u32).to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&payload.to_le_bytes());
    assert_eq!(b.len(), 1 + HEADER_LEN);
    b
}

#[test]
fn announced_huge_frames_are_refused_without_allocating_them() {
    let node = node();
    let addr = start(&node, ServeLimits::default());
    // Sixteen peers at once, each announcing a 1 GiB payload.
    let announced = 1u64 << 30;
    let mut flood: Vec<TcpStream> = (0..16).map(|_| connect(&addr)).collect();
    for s in &mut flood {
        s.write_all(&forward_header(node.digest(), announced))
            .unwrap();
    }
    for s in &mut flood {
        let m = error_then_eof(s);
        assert!(m.contains("exceeds the limit"), "{m}");
    }
    let largest = LARGEST.load(Ordering::SeqCst);
    assert!(
        largest < 1 << 26,
        "an allocation of {largest} bytes for frames announcing {announced}"
    );
    // The server still answers, and correctly.
    let mut p = Pipeline::connect(&[addr], 7).unwrap();
    let ids = [1, 20, 300, 4];
    let got = p.forward_tokens(0, &ids).unwrap();
    assert!(same_bits(&got, &local_logits(&node, 8, 0, &ids)));
}

#[test]
fn silent_peers_are_dropped_after_the_read_timeout() {
    let node = node();
    let limits = ServeLimits {
        read_timeout: Duration::from_millis(200),
        ..ServeLimits::default()
    };
    let addr = start(&node, limits);
    // Nothing at all, and half a request.
    let mut silent = connect(&addr);
    let mut partial = connect(&addr);
    partial
        .write_all(&forward_header(node.digest(), 16)[..40])
        .unwrap();
    for s in [&mut silent, &mut partial] {
        assert_eq!(s.read(&mut [0u8; 1]).expect("the server closes"), 0);
    }
    // A client that keeps talking is served.
    let mut c = NodeClient::new(&addr);
    let info = c.info().unwrap();
    assert_eq!(info.digest, node.digest());
}

#[test]
fn connections_over_the_bound_are_refused_and_sessions_go_on() {
    let node = node();
    let limits = ServeLimits {
        max_connections: 2,
        ..ServeLimits::default()
    };
    let addr = start(&node, limits);
    let mut p = Pipeline::connect(std::slice::from_ref(&addr), 1).unwrap();
    let got = p.forward_tokens(0, &[5, 6, 7]).unwrap();
    assert!(same_bits(&got, &local_logits(&node, 101, 0, &[5, 6, 7])));
    // A second connection takes the last slot; a third is refused.
    let idle = connect(&addr);
    let mut extra = connect(&addr);
    let m = error_then_eof(&mut extra);
    assert!(m.contains("too many connections (limit 2)"), "{m}");
    // The open session goes on.
    let got = p.forward_tokens(3, &[8]).unwrap();
    assert!(same_bits(&got, &local_logits(&node, 101, 3, &[8])));
    // Once a connection ends its slot is free again (the server notices the
    // end on its own thread, so ask until it has).
    drop(idle);
    let mut c = NodeClient::new(&addr);
    let mut tries = 0;
    while c.info().is_err() {
        tries += 1;
        assert!(tries < 200, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}
