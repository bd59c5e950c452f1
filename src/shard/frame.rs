//! Activation frames: the versioned little-endian wire format in which token
//! ids, hidden states and logits travel between shards. `docs/frames.md`
//! describes it byte by byte. Decoding validates every field and the
//! checksum; [`Frame::check`] then validates it against what the receiving
//! shard expects (model, layer boundary, width, position).

use half::{bf16, f16};

use super::digest::Digest;
use crate::{Error, Result};

/// `STAF`: Strata activation frame.
pub const MAGIC: [u8; 4] = *b"STAF";
/// The format version this library writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 80;
/// Bytes after the payload (BLAKE3 of header and payload).
pub const CHECKSUM_LEN: usize = 32;
/// Largest payload accepted (1 GiB).
pub const MAX_PAYLOAD: u64 = 1 << 30;

/// What the rows of a frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Token ids (width 1, dtype u32): input of the first shard.
    Tokens = 0,
    /// Hidden states between shards (width = embedding size).
    Hidden = 1,
    /// Logits from the last shard (width = vocabulary size).
    Logits = 2,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        Some(match v {
            0 => FrameKind::Tokens,
            1 => FrameKind::Hidden,
            2 => FrameKind::Logits,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Tokens => "token ids",
            FrameKind::Hidden => "hidden states",
            FrameKind::Logits => "logits",
        }
    }
}

/// Element type of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    BF16 = 2,
    U32 = 3,
}

impl DType {
    fn from_u8(v: u8) -> Option<DType> {
        Some(match v {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::BF16,
            3 => DType::U32,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// A decoded (and checksum-verified) frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: FrameKind,
    pub dtype: DType,
    /// Digest of the model the frame belongs to.
    pub model: Digest,
    /// Index of the first layer that consumes this frame (0 for tokens, the
    /// layer count for logits).
    pub boundary: u32,
    pub session: u64,
    /// Position of the first row.
    pub position: u64,
    pub n_tokens: u32,
    /// Values per row.
    pub width: u32,
    /// `n_tokens * width` little-endian values of `dtype`.
    pub payload: Vec<u8>,
}

fn malformed(field: &'static str, reason: impl Into<String>) -> Error {
    Error::FrameMalformed {
        field,
        reason: reason.into(),
    }
}

impl Frame {
    /// A frame of token ids for the first shard.
    pub fn tokens(model: Digest, session: u64, position: u64, ids: &[u32]) -> Frame {
        Frame {
            kind: FrameKind::Tokens,
            dtype: DType::U32,
            model,
            boundary: 0,
            session,
            position,
            n_tokens: ids.len() as u32,
            width: 1,
            payload: ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A frame of float rows (`values` is `[n][width]`), stored as `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn floats(
        kind: FrameKind,
        dtype: DType,
        model: Digest,
        boundary: u32,
        session: u64,
        position: u64,
        width: u32,
        values: &[f32],
    ) -> Result<Frame> {
        if kind == FrameKind::Tokens || dtype == DType::U32 {
            return Err(Error::invalid(
                "dtype",
                "float frames take f32, f16 or bf16",
            ));
        }
        if width == 0 || values.len() % width as usize != 0 {
            return Err(Error::invalid(
                "width",
                format!("{} values are not rows of {width}", values.len()),
            ));
        }
        let payload = match dtype {
            DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
            DType::U32 => unreachable!(),
        };
        Ok(Frame {
            kind,
            dtype,
            model,
            boundary,
            session,
            position,
            n_tokens: (values.len() / width as usize) as u32,
            width,
            payload,
        })
    }

    /// The payload as token ids (tokens frames).
    pub fn token_ids(&self) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            return Err(Error::FrameWrongKind {
                expected: FrameKind::Tokens.name(),
                found: self.kind.name(),
            });
        }
        Ok(self
            .payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The payload as f32 (float frames).
    pub fn values(&self) -> Result<Vec<f32>> {
        let p = &self.payload;
        Ok(match self.dtype {
            DType::F32 => p
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => p
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => p
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::U32 => {
                return Err(Error::FrameWrongKind {
                    expected: FrameKind::Hidden.name(),
                    found: self.kind.name(),
                })
            }
        })
    }

    /// BLAKE3 of the payload: the output digest redundant nodes compare.
    pub fn payload_digest(&self) -> Digest {
        Digest::of(&self.payload)
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len() + CHECKSUM_LEN
    }

    /// Encode to bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(self.kind as u8);
        b.push(self.dtype as u8);
        b.extend_from_slice(&self.model.0);
        b.extend_from_slice(&self.boundary.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.session.to_le_bytes());
        b.extend_from_slice(&self.position.to_le_bytes());
        b.extend_from_slice(&self.n_tokens.to_le_bytes());
        b.extend_from_slice(&self.width.to_le_bytes());
        b.extend_from_slice(&(self.payload.len() as u64).to_le_bytes());
        debug_assert_eq!(b.len(), HEADER_LEN);
        b.extend_from_slice(&self.payload);
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
        b
    }

    /// Total encoded length announced by a header (for stream readers), after
    /// checking the header's fixed fields.
    pub fn length_from_header(h: &[u8]) -> Result<usize> {
        if h.len() < HEADER_LEN {
            return Err(malformed(
                "header",
                format!("{} bytes, a header is {HEADER_LEN}", h.len()),
            ));
        }
        if h[0..4] != MAGIC {
            return Err(malformed(
                "magic",
                format!("{:02x?} is not \"STAF\"", &h[0..4]),
            ));
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != VERSION {
            return Err(malformed(
                "version",
                format!("{version} (this library reads {VERSION})"),
            ));
        }
        let len = u64::from_le_bytes(h[72..80].try_into().unwrap_or([0; 8]));
        if len > MAX_PAYLOAD {
            return Err(malformed(
                "payload length",
                format!("{len} bytes exceeds {MAX_PAYLOAD}"),
            ));
        }
        Ok(HEADER_LEN + len as usize + CHECKSUM_LEN)
    }

    /// Decode and validate a frame: every field, the sizes, the checksum.
    pub fn decode(b: &[u8]) -> Result<Frame> {
        let total = Self::length_from_header(b)?;
        if b.len() != total {
            return Err(malformed(
                "length",
                format!("{} bytes, the header announces {total}", b.len()),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let kind = FrameKind::from_u8(b[6])
            .ok_or_else(|| malformed("kind", format!("unknown kind {}", b[6])))?;
        let dtype = DType::from_u8(b[7])
            .ok_or_else(|| malformed("dtype", format!("unknown dtype {}", b[7])))?;
        if (kind == FrameKind::Tokens) != (dtype == DType::U32) {
            return Err(malformed(
                "dtype",
                format!("{dtype:?} cannot carry {}", kind.name()),
            ));
        }
        let mut model = [0u8; 32];
        model.copy_from_slice(&b[8..40]);
        if u32_at(44) != 0 {
            return Err(malformed("reserved", "must be zero"));
        }
        let (n_tokens, width) = (u32_at(64), u32_at(68));
        if n_tokens == 0 {
            return Err(malformed("token count", "must be at least 1"));
        }
        if width == 0 || (kind == FrameKind::Tokens && width != 1) {
            return Err(malformed(
                "width",
                format!("{width} is not valid for {}", kind.name()),
            ));
        }
        let payload_len = u64_at(72);
        // Both counts come from the wire: 2^31 × 2^31 × 4 wraps a u64 to 0.
        let expected = (n_tokens as u64)
            .checked_mul(width as u64)
            .and_then(|v| v.checked_mul(dtype.size() as u64))
            .ok_or_else(|| {
                malformed(
                    "payload length",
                    format!("{n_tokens} rows of {width} {dtype:?} overflow a 64-bit byte count"),
                )
            })?;
        if payload_len != expected {
            return Err(malformed(
                "payload length",
                format!(
                    "{payload_len} bytes, {n_tokens} rows of {width} {dtype:?} need {expected}"
                ),
            ));
        }
        let body = total - CHECKSUM_LEN;
        if blake3::hash(&b[..body]).as_bytes() != &b[body..] {
            return Err(Error::FrameChecksum);
        }
        Ok(Frame {
            kind,
            dtype,
            model: Digest(model),
            boundary: u32_at(40),
            session: u64_at(48),
            position: u64_at(56),
            n_tokens,
            width,
            payload: b[HEADER_LEN..body].to_vec(),
        })
    }

    /// Check the frame against what a shard expects: its model digest, the
    /// layer it starts at, its row width, and that the frame's position does
    /// not leave a gap after the `held` positions of the session.
    pub fn check(&self, model: &Digest, boundary: u32, width: u32, held: u64) -> Result<()> {
        if self.model != *model {
            return Err(Error::FrameWrongModel {
                expected: model.to_hex(),
                found: self.model.to_hex(),
            });
        }
        let want_kind = if boundary == 0 {
            FrameKind::Tokens
        } else {
            FrameKind::Hidden
        };
        if self.kind != want_kind {
            return Err(Error::FrameWrongKind {
                expected: want_kind.name(),
                found: self.kind.name(),
            });
        }
        if self.boundary != boundary {
            return Err(Error::FrameWrongBoundary {
                expected: boundary,
                found: self.boundary,
            });
        }
        if self.width != width {
            return Err(Error::FrameWrongWidth {
                expected: width,
                found: self.width,
            });
        }
        if self.position > held {
            return Err(Error::FrameWrongPosition {
                session: self.session,
                held,
                found: self.position,
            });
        }
        Ok(())
    }
}
