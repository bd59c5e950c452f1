//! Shards: a loaded model or layer range serving many sessions, frame in,
//! frame out, each frame validated against the model digest, the layer
//! boundary, the row width and the session's position.

use std::mem::size_of;
use std::sync::Arc;

use super::args::{self, Out, OutBuf, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::frame::{decode, dtype_from, strata_dtype, STRATA_DTYPE_F32};
use super::model::strata_model;
use super::status::strata_status::{self, *};
use crate::shard::frame::{CHECKSUM_LEN, HEADER_LEN};
use crate::shard::{DType, Frame, NodeLimits, ShardNode};

/// Limits that bound a shard's memory, and the element type of the hidden
/// states it sends. Set struct_size to sizeof(strata_shard_limits); NULL
/// means the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_shard_limits {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Most sessions open at once; a frame for a new session beyond it gets
    /// STRATA_TOO_MANY_SESSIONS. Default 64.
    pub max_sessions: u32,
    /// Context limit of each session in positions. Default 4096.
    pub n_ctx: u32,
    /// STRATA_DTYPE_F32 (default, exact), F16 or BF16 (half the bytes; the
    /// next shard's input then differs) for the hidden-state frames sent.
    pub output_dtype: strata_dtype,
}

impl Default for strata_shard_limits {
    fn default() -> Self {
        let d = NodeLimits::default();
        strata_shard_limits {
            struct_size: size_of::<Self>() as u32,
            max_sessions: d.max_sessions as u32,
            n_ctx: d.n_ctx as u32,
            output_dtype: STRATA_DTYPE_F32,
        }
    }
}

unsafe impl SizedStruct for strata_shard_limits {
    const NAME: &'static str = "strata_shard_limits";
    const MIN_SIZE: usize = size_of::<Self>();
}

/// A shard node: a model (or layer range) serving sessions by frames.
/// Thread-safe: strata_shard_forward may run on several threads at once
/// (frames of different sessions run in parallel; frames of one session
/// are serialized). Sessions are created by the first frame with their id.
pub struct strata_shard {
    node: ShardNode,
    out_dtype: DType,
}

impl strata_shard {
    unsafe fn get<'a>(p: *const strata_shard) -> FfiResult<&'a strata_shard> {
        args::nonnull(p, "shard")
    }

    /// The encoded length of the frame a forward of `f` produces.
    fn output_len(&self, f: &Frame) -> usize {
        let m = self.node.model();
        let cfg = m.config();
        let payload = if m.gives_logits() {
            cfg.n_vocab * DType::F32.size()
        } else {
            f.n_tokens as usize * cfg.n_embd * self.out_dtype.size()
        };
        HEADER_LEN + payload + CHECKSUM_LEN
    }
}

/// Fill `*limits` with the defaults. Set limits->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_limits_default(
    limits: *mut strata_shard_limits,
) -> strata_status {
    ffi_guard!({
        args::OutStruct::new(limits, "limits")?.write(strata_shard_limits::default());
        Ok(())
    })
}

/// Create a shard node over `model` (a whole model or a layer range; it
/// keeps the model alive). For a whole-model file this computes the model
/// digest first (reads every tensor once). Free it with strata_shard_free.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_new(
    model: *const strata_model,
    limits: *const strata_shard_limits,
    shard: *mut *mut strata_shard,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let l = args::read_struct_or_default(limits, "limits")?;
        let out = Out::new(shard, "shard")?;
        let out_dtype = dtype_from(l.output_dtype)?;
        if out_dtype == DType::U32 {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "output_dtype must be F32, F16 or BF16",
            ));
        }
        let node = ShardNode::new(
            Arc::clone(m),
            NodeLimits {
                max_sessions: l.max_sessions as usize,
                n_ctx: l.n_ctx as usize,
            },
        )?
        .with_output_dtype(out_dtype)?;
        log_info!(
            "shard over layers {}..{} of model {}: up to {} sessions of {} positions",
            m.layers().start,
            m.layers().end,
            node.digest(),
            l.max_sessions,
            l.n_ctx
        );
        out.write(Box::into_raw(Box::new(strata_shard { node, out_dtype })));
        Ok(())
    })
}

/// Free a shard node and every session it holds (NULL is accepted).
#[no_mangle]
pub unsafe extern "C" fn strata_shard_free(shard: *mut strata_shard) {
    ffi_guard!(@value (), {
        if !shard.is_null() {
            drop(Box::from_raw(shard));
        }
    })
}

/// The length of the frame strata_shard_forward would produce for the input
/// frame `frame` (which is validated: malformed or corrupt frames fail here).
/// Hidden states: 80 + n_tokens * n_embd * dtype size + 32; logits (last
/// shard, last token only): 80 + 4 * n_vocab + 32.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_output_len(
    shard: *const strata_shard,
    frame: *const u8,
    frame_len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        let out = Out::new(out_len, "out_len")?;
        let f = decode(frame, frame_len)?;
        out.write(s.output_len(&f));
        Ok(())
    })
}

/// Run one frame through the shard's layers and write the output frame
/// (hidden states for the next shard, or the last token's logits from the
/// last shard) into `out` (`out_cap` bytes); `*out_len` receives its length.
/// The first frame of a session id opens that session; a frame whose
/// position is below the session's rolls it back first (replay).
///
/// Checks, in order, each leaving every session unchanged when it fails:
/// STRATA_FRAME_MALFORMED / STRATA_FRAME_CHECKSUM (bad bytes),
/// STRATA_BUFFER_TOO_SMALL (`*out_len` = length needed),
/// STRATA_FRAME_WRONG_MODEL, _WRONG_KIND, _WRONG_BOUNDARY, _WRONG_WIDTH,
/// _WRONG_POSITION (a gap after the session's positions),
/// STRATA_TOO_MANY_SESSIONS, STRATA_TOKEN_OUT_OF_RANGE, STRATA_CONTEXT_FULL.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_forward(
    shard: *const strata_shard,
    frame: *const u8,
    frame_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        args::disjoint(frame, frame_len, out, out_cap, "frame and out")?;
        let mut out = OutBuf::new(out, out_cap, out_len, "out")?;
        let f = decode(frame, frame_len)?;
        out.reserve(s.output_len(&f))?;
        let r = s.node.forward(&f)?;
        out.fill(&r.frame.encode())
    })
}

/// Roll session `session_id` back to `position` positions.
/// STRATA_UNKNOWN_SESSION if the shard has no such session.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_truncate(
    shard: *const strata_shard,
    session_id: u64,
    position: u64,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        s.node
            .truncate(session_id, position.min(usize::MAX as u64) as usize)?;
        Ok(())
    })
}

/// Close session `session_id` and free its KV cache.
/// STRATA_UNKNOWN_SESSION if the shard has no such session.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_close(
    shard: *const strata_shard,
    session_id: u64,
) -> strata_status {
    ffi_guard!({
        strata_shard::get(shard)?.node.close(session_id)?;
        Ok(())
    })
}

/// Positions session `session_id` holds (0 for a session not open).
#[no_mangle]
pub unsafe extern "C" fn strata_shard_position(
    shard: *const strata_shard,
    session_id: u64,
    position: *mut u64,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        Out::new(position, "position")?.write(s.node.position(session_id) as u64);
        Ok(())
    })
}

/// Number of sessions open on the shard.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_n_sessions(
    shard: *const strata_shard,
    n: *mut usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        Out::new(n, "n")?.write(s.node.n_sessions());
        Ok(())
    })
}

/// The digest of the model the shard serves (32 bytes into `out`): the
/// `model` field its input frames must carry.
#[no_mangle]
pub unsafe extern "C" fn strata_shard_digest(
    shard: *const strata_shard,
    out: *mut u8,
    out_len: usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_shard::get(shard)?;
        let buf = super::model::digest_out(out, out_len)?;
        buf.copy_from_slice(&s.node.digest().0);
        Ok(())
    })
}
