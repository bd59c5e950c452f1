//! The binary form of a receipt (`docs/receipts.md` has the table):
//! a 160-byte header, the prompt and generated token ids, the commitments,
//! the Merkle root and the fingerprint. All integers little-endian.

use super::{malformed, Receipt, MAX_POSITIONS};
use crate::sampler::SamplerParams;
use crate::shard::Digest;
use crate::Result;

/// `STRC`: Strata receipt.
pub const MAGIC: [u8; 4] = *b"STRC";
/// The format version this library writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the token ids.
pub const HEADER_LEN: usize = 160;
/// Commitment kind 1: BLAKE3 of each position's f32 logits, little-endian.
pub const COMMITMENT_LOGITS_BLAKE3: u32 = 1;
/// Flags bit 0: the chat template digest is present.
const FLAG_CHAT_TEMPLATE: u16 = 1;
/// Domain separation of the fingerprint.
const FINGERPRINT_DOMAIN: &[u8] = b"strata-receipt-v1\0";

fn clamp_u32(v: usize) -> u32 {
    v.min(u32::MAX as usize) as u32
}

/// The header and token ids: everything the fingerprint covers but the root.
fn head(r: &Receipt) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + 4 * (r.prompt.len() + r.tokens.len()));
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    let flags = if r.chat_template.is_some() {
        FLAG_CHAT_TEMPLATE
    } else {
        0
    };
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&r.numerics_version.to_le_bytes());
    b.extend_from_slice(&COMMITMENT_LOGITS_BLAKE3.to_le_bytes());
    b.extend_from_slice(&r.model.0);
    b.extend_from_slice(&r.tokenizer.0);
    b.extend_from_slice(&r.chat_template.map_or([0; 32], |d| d.0));
    let s = &r.sampler;
    b.extend_from_slice(&s.temperature.to_le_bytes());
    b.extend_from_slice(&clamp_u32(s.top_k).to_le_bytes());
    b.extend_from_slice(&s.top_p.to_le_bytes());
    b.extend_from_slice(&s.min_p.to_le_bytes());
    b.extend_from_slice(&s.repeat_penalty.to_le_bytes());
    b.extend_from_slice(&clamp_u32(s.repeat_last_n).to_le_bytes());
    b.extend_from_slice(&s.frequency_penalty.to_le_bytes());
    b.extend_from_slice(&s.presence_penalty.to_le_bytes());
    b.extend_from_slice(&s.seed.to_le_bytes());
    b.extend_from_slice(&clamp_u32(r.prompt.len()).to_le_bytes());
    b.extend_from_slice(&clamp_u32(r.tokens.len()).to_le_bytes());
    debug_assert_eq!(b.len(), HEADER_LEN);
    for t in r.prompt.iter().chain(&r.tokens) {
        b.extend_from_slice(&t.to_le_bytes());
    }
    b
}

/// BLAKE3 over the domain string, the header and token ids, and `root`.
pub(super) fn fingerprint(r: &Receipt, root: &Digest) -> Digest {
    fingerprint_of(&head(r), root)
}

fn fingerprint_of(head: &[u8], root: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(FINGERPRINT_DOMAIN);
    h.update(head);
    h.update(&root.0);
    Digest(*h.finalize().as_bytes())
}

pub(super) fn encode(r: &Receipt) -> Vec<u8> {
    let mut b = head(r);
    let root = r.root();
    let fp = fingerprint_of(&b, &root);
    for c in &r.commitments {
        b.extend_from_slice(&c.0);
    }
    b.extend_from_slice(&root.0);
    b.extend_from_slice(&fp.0);
    b
}

/// Reads fields in order, every read bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(malformed(
                field,
                format!(
                    "{n} bytes needed at offset {}, the receipt has {}",
                    self.at,
                    self.b.len()
                ),
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, f: &'static str) -> Result<u16> {
        let s = self.take(2, f)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32> {
        let s = self.take(4, f)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn f32(&mut self, f: &'static str) -> Result<f32> {
        Ok(f32::from_bits(self.u32(f)?))
    }
    fn u64(&mut self, f: &'static str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, f)?);
        Ok(u64::from_le_bytes(a))
    }
    fn digest(&mut self, f: &'static str) -> Result<Digest> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, f)?);
        Ok(Digest(a))
    }
    fn ids(&mut self, n: usize, f: &'static str) -> Result<Vec<u32>> {
        let s = self.take(n * 4, f)?;
        Ok(s.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Checks shared by both forms once the fields are read: the counts, the
/// root and the fingerprint.
pub(super) fn check_counts(n_prompt: usize, n_tokens: usize) -> Result<()> {
    if n_prompt == 0 {
        return Err(malformed("prompt count", "must be at least 1"));
    }
    if n_prompt.saturating_add(n_tokens) > MAX_POSITIONS {
        return Err(malformed(
            "token counts",
            format!(
                "{n_prompt} prompt + {n_tokens} generated tokens exceed {MAX_POSITIONS} positions"
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_digests(r: &Receipt, root: &Digest, fingerprint: &Digest) -> Result<()> {
    let want = r.root();
    if want != *root {
        return Err(malformed(
            "root",
            format!("records {root}, the commitments give {want}"),
        ));
    }
    let fp = r.fingerprint();
    if fp != *fingerprint {
        return Err(malformed(
            "fingerprint",
            format!("records {fingerprint}, the contents give {fp}"),
        ));
    }
    Ok(())
}

pub(super) fn decode(b: &[u8]) -> Result<Receipt> {
    let mut rd = Reader { b, at: 0 };
    if rd.take(4, "magic")? != MAGIC {
        return Err(malformed(
            "magic",
            format!("{:02x?} is not \"STRC\"", &b[..4]),
        ));
    }
    let version = rd.u16("version")?;
    if version != VERSION {
        return Err(malformed(
            "version",
            format!("{version} (this library reads {VERSION})"),
        ));
    }
    let flags = rd.u16("flags")?;
    if flags & !FLAG_CHAT_TEMPLATE != 0 {
        return Err(malformed("flags", format!("unknown bits in {flags:#06x}")));
    }
    let numerics_version = rd.u32("numerics version")?;
    let kind = rd.u32("commitment kind")?;
    if kind != COMMITMENT_LOGITS_BLAKE3 {
        return Err(malformed(
            "commitment kind",
            format!("{kind} (this library knows {COMMITMENT_LOGITS_BLAKE3}: BLAKE3 of f32 logits)"),
        ));
    }
    let model = rd.digest("model digest")?;
    let tokenizer = rd.digest("tokenizer digest")?;
    let template = rd.digest("chat template digest")?;
    let chat_template = if flags & FLAG_CHAT_TEMPLATE != 0 {
        Some(template)
    } else if template.0 != [0; 32] {
        return Err(malformed(
            "chat template digest",
            "must be zero when the flag is clear",
        ));
    } else {
        None
    };
    let sampler = SamplerParams {
        temperature: rd.f32("temperature")?,
        top_k: rd.u32("top_k")? as usize,
        top_p: rd.f32("top_p")?,
        min_p: rd.f32("min_p")?,
        repeat_penalty: rd.f32("repeat_penalty")?,
        repeat_last_n: rd.u32("repeat_last_n")? as usize,
        frequency_penalty: rd.f32("frequency_penalty")?,
        presence_penalty: rd.f32("presence_penalty")?,
        seed: rd.u64("seed")?,
    };
    let n_prompt = rd.u32("prompt count")? as usize;
    let n_tokens = rd.u32("token count")? as usize;
    check_counts(n_prompt, n_tokens)?;
    // The counts decide the length exactly: check it before allocating.
    let total = HEADER_LEN + 4 * n_prompt + 36 * n_tokens + 64;
    if b.len() != total {
        return Err(malformed(
            "length",
            format!(
                "{} bytes, {n_prompt} prompt and {n_tokens} generated tokens need {total}",
                b.len()
            ),
        ));
    }
    let prompt = rd.ids(n_prompt, "prompt tokens")?;
    let tokens = rd.ids(n_tokens, "generated tokens")?;
    let mut commitments = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        commitments.push(rd.digest("commitments")?);
    }
    let root = rd.digest("root")?;
    let fingerprint = rd.digest("fingerprint")?;
    let r = Receipt {
        numerics_version,
        model,
        tokenizer,
        chat_template,
        sampler,
        prompt,
        tokens,
        commitments,
    };
    check_digests(&r, &root, &fingerprint)?;
    Ok(r)
}
