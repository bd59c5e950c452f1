//! Activation frames (`docs/frames.md`): encode token ids or float rows,
//! decode and validate, read the payload, digest it.

use std::mem::size_of;

use super::args::{self, Out, OutBuf, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::model::digest_out;
use super::status::strata_status::{self, *};
use crate::shard::frame::{CHECKSUM_LEN, HEADER_LEN, MAX_PAYLOAD};
use crate::shard::{DType, Digest, Frame, FrameKind};

/// What the rows of a frame are.
pub type strata_frame_kind = u32;
/// Token ids (width 1, dtype STRATA_DTYPE_U32): the first shard's input.
pub const STRATA_FRAME_TOKENS: strata_frame_kind = 0;
/// Hidden states between shards (width = n_embd).
pub const STRATA_FRAME_HIDDEN: strata_frame_kind = 1;
/// Logits from the last shard (width = n_vocab).
pub const STRATA_FRAME_LOGITS: strata_frame_kind = 2;

/// Element type of a frame's payload.
pub type strata_dtype = u32;
/// 32-bit IEEE float (exact hidden states).
pub const STRATA_DTYPE_F32: strata_dtype = 0;
/// 16-bit IEEE float (half the bytes of f32).
pub const STRATA_DTYPE_F16: strata_dtype = 1;
/// bfloat16 (the top half of an f32).
pub const STRATA_DTYPE_BF16: strata_dtype = 2;
/// 32-bit unsigned integer (token ids only).
pub const STRATA_DTYPE_U32: strata_dtype = 3;

/// Bytes of a frame before its payload.
pub const STRATA_FRAME_HEADER_LEN: u32 = 80;
/// Bytes of a frame after its payload (the BLAKE3 checksum).
pub const STRATA_FRAME_CHECKSUM_LEN: u32 = 32;

/// A frame's header fields. Filled by strata_frame_decode; read by
/// strata_frame_encode_floats. Set struct_size to sizeof(strata_frame_info).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_frame_info {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// A STRATA_FRAME_* kind.
    pub kind: strata_frame_kind,
    /// A STRATA_DTYPE_* element type.
    pub dtype: strata_dtype,
    /// Index of the first layer that consumes the frame (0 for tokens, the
    /// layer count for logits).
    pub boundary: u32,
    /// Digest of the model the frame belongs to.
    pub model: [u8; 32],
    /// The sender's session id; a shard keeps one KV cache per id.
    pub session: u64,
    /// Position of the first row in the session.
    pub position: u64,
    /// Rows (tokens).
    pub n_tokens: u32,
    /// Values per row.
    pub width: u32,
    /// Payload bytes (n_tokens * width * size of dtype).
    pub payload_len: u64,
}

unsafe impl SizedStruct for strata_frame_info {
    const NAME: &'static str = "strata_frame_info";
    const MIN_SIZE: usize = size_of::<Self>();
}

fn kind_from(v: strata_frame_kind) -> FfiResult<FrameKind> {
    Ok(match v {
        STRATA_FRAME_TOKENS => FrameKind::Tokens,
        STRATA_FRAME_HIDDEN => FrameKind::Hidden,
        STRATA_FRAME_LOGITS => FrameKind::Logits,
        _ => {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                format!("{v} is not a STRATA_FRAME_* kind"),
            ))
        }
    })
}

pub(crate) fn dtype_from(v: strata_dtype) -> FfiResult<DType> {
    Ok(match v {
        STRATA_DTYPE_F32 => DType::F32,
        STRATA_DTYPE_F16 => DType::F16,
        STRATA_DTYPE_BF16 => DType::BF16,
        STRATA_DTYPE_U32 => DType::U32,
        _ => {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                format!("{v} is not a STRATA_DTYPE_* type"),
            ))
        }
    })
}

pub(crate) fn info_of(f: &Frame) -> strata_frame_info {
    strata_frame_info {
        struct_size: 0,
        kind: f.kind as u32,
        dtype: f.dtype as u32,
        boundary: f.boundary,
        model: f.model.0,
        session: f.session,
        position: f.position,
        n_tokens: f.n_tokens,
        width: f.width,
        payload_len: f.payload.len() as u64,
    }
}

/// Decode and fully validate frame bytes (header fields, sizes, checksum).
pub(crate) unsafe fn decode(frame: *const u8, len: usize) -> FfiResult<Frame> {
    let bytes = args::in_slice(frame, len, "frame")?;
    Ok(Frame::decode(bytes)?)
}

unsafe fn digest_arg(model: *const u8, model_len: usize) -> FfiResult<Digest> {
    let d = args::in_slice(model, model_len, "model_digest")?;
    if d.len() != 32 {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("a model digest is 32 bytes, not {}", d.len()),
        ));
    }
    let mut a = [0u8; 32];
    a.copy_from_slice(d);
    Ok(Digest(a))
}

fn encoded_len(n_values: usize, dtype: DType) -> FfiResult<usize> {
    let payload = n_values as u64 * dtype.size() as u64;
    if payload > MAX_PAYLOAD {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("a payload of {payload} bytes exceeds the frame limit of {MAX_PAYLOAD}"),
        ));
    }
    Ok(HEADER_LEN + payload as usize + CHECKSUM_LEN)
}

/// Encode a frame of `n_tokens` token ids for the first shard of the model
/// whose digest is `model_digest` (32 bytes), for session `session` starting
/// at `position`, into `out` (`out_cap` bytes); `*out_len` receives the
/// frame length (80 + 4 * n_tokens + 32; query it with out_cap 0).
#[no_mangle]
pub unsafe extern "C" fn strata_frame_encode_tokens(
    model_digest: *const u8,
    model_digest_len: usize,
    session: u64,
    position: u64,
    tokens: *const u32,
    n_tokens: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        args::disjoint(tokens, n_tokens, out, out_cap, "tokens and out")?;
        args::disjoint(
            model_digest,
            model_digest_len,
            out,
            out_cap,
            "model_digest and out",
        )?;
        let model = digest_arg(model_digest, model_digest_len)?;
        let tokens = args::in_slice(tokens, n_tokens, "tokens")?;
        let mut out = OutBuf::new(out, out_cap, out_len, "out")?;
        if tokens.is_empty() {
            return Err(fail(STRATA_EMPTY_INPUT, "a frame needs at least one token"));
        }
        if tokens.len() > u32::MAX as usize {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "more than 2^32-1 tokens in one frame",
            ));
        }
        out.reserve(encoded_len(tokens.len(), DType::U32)?)?;
        out.fill(&Frame::tokens(model, session, position, tokens).encode())
    })
}

/// Encode a frame of float rows: `header` gives kind (HIDDEN or LOGITS),
/// dtype (F32, F16 or BF16: the values are converted), model, boundary,
/// session, position and width; its n_tokens and payload_len are ignored
/// (they follow from `n_values`, which must be a non-zero multiple of width).
#[no_mangle]
pub unsafe extern "C" fn strata_frame_encode_floats(
    header: *const strata_frame_info,
    values: *const f32,
    n_values: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        args::disjoint(values, n_values, out, out_cap, "values and out")?;
        let h = args::read_struct(header, "header")?;
        let values = args::in_slice(values, n_values, "values")?;
        let mut out = OutBuf::new(out, out_cap, out_len, "out")?;
        let kind = kind_from(h.kind)?;
        let dtype = dtype_from(h.dtype)?;
        if values.is_empty() {
            return Err(fail(STRATA_EMPTY_INPUT, "a frame needs at least one row"));
        }
        if h.width == 0 || values.len() % h.width as usize != 0 {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                format!(
                    "{} values are not whole rows of width {}",
                    values.len(),
                    h.width
                ),
            ));
        }
        if values.len() / h.width as usize > u32::MAX as usize {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "more than 2^32-1 rows in one frame",
            ));
        }
        out.reserve(encoded_len(values.len(), dtype)?)?;
        let f = Frame::floats(
            kind,
            dtype,
            Digest(h.model),
            h.boundary,
            h.session,
            h.position,
            h.width,
            values,
        )?;
        out.fill(&f.encode())
    })
}

/// Decode and validate frame bytes (magic, version, kind, dtype, sizes,
/// checksum) and describe them in `*info` (struct_size set first).
/// STRATA_FRAME_MALFORMED or STRATA_FRAME_CHECKSUM when invalid.
#[no_mangle]
pub unsafe extern "C" fn strata_frame_decode(
    frame: *const u8,
    frame_len: usize,
    info: *mut strata_frame_info,
) -> strata_status {
    ffi_guard!({
        let out = OutStruct::new(info, "info")?;
        let f = decode(frame, frame_len)?;
        out.write(info_of(&f));
        Ok(())
    })
}

/// Total length of the frame whose first 80 bytes (at least) are at
/// `header`, after checking the fixed header fields: for reading frames
/// from a stream.
#[no_mangle]
pub unsafe extern "C" fn strata_frame_length(
    header: *const u8,
    header_len: usize,
    frame_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let h = args::in_slice(header, header_len, "header")?;
        let out = Out::new(frame_len, "frame_len")?;
        out.write(Frame::length_from_header(h)?);
        Ok(())
    })
}

/// The token ids of a (validated) tokens frame into `tokens`; `*n_tokens`
/// receives the count. STRATA_FRAME_WRONG_KIND for a float frame.
#[no_mangle]
pub unsafe extern "C" fn strata_frame_tokens(
    frame: *const u8,
    frame_len: usize,
    tokens: *mut u32,
    max_tokens: usize,
    n_tokens: *mut usize,
) -> strata_status {
    ffi_guard!({
        args::disjoint(frame, frame_len, tokens, max_tokens, "frame and tokens")?;
        let mut out = OutBuf::new(tokens, max_tokens, n_tokens, "tokens")?;
        let f = decode(frame, frame_len)?;
        if f.dtype != DType::U32 {
            return Err(crate::Error::FrameWrongKind {
                expected: FrameKind::Tokens.name(),
                found: f.kind.name(),
            }
            .into());
        }
        out.reserve(f.n_tokens as usize)?;
        out.fill(&f.token_ids()?)
    })
}

/// The values of a (validated) float frame as f32 (converted from f16/bf16)
/// into `values`; `*n_values` receives n_tokens * width.
/// STRATA_FRAME_WRONG_KIND for a tokens frame.
#[no_mangle]
pub unsafe extern "C" fn strata_frame_values(
    frame: *const u8,
    frame_len: usize,
    values: *mut f32,
    max_values: usize,
    n_values: *mut usize,
) -> strata_status {
    ffi_guard!({
        args::disjoint(frame, frame_len, values, max_values, "frame and values")?;
        let mut out = OutBuf::new(values, max_values, n_values, "values")?;
        let f = decode(frame, frame_len)?;
        if f.dtype == DType::U32 {
            return Err(crate::Error::FrameWrongKind {
                expected: "hidden states or logits",
                found: f.kind.name(),
            }
            .into());
        }
        out.reserve(f.n_tokens as usize * f.width as usize)?;
        out.fill(&f.values()?)
    })
}

/// The output digest of a (validated) frame: BLAKE3 of its payload, equal
/// on every node that computed the same thing, into `out` (32 bytes).
#[no_mangle]
pub unsafe extern "C" fn strata_frame_payload_digest(
    frame: *const u8,
    frame_len: usize,
    out: *mut u8,
    out_len: usize,
) -> strata_status {
    ffi_guard!({
        let buf = digest_out(out, out_len)?;
        let f = decode(frame, frame_len)?;
        buf.copy_from_slice(&f.payload_digest().0);
        Ok(())
    })
}
