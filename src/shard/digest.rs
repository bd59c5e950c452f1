//! Model identity: a BLAKE3 digest of everything that affects what a model
//! computes — its tensors (names, types, shapes, bytes) and its metadata
//! (hyperparameters, tokenizer) — and nothing that does not (names,
//! licences, shard bookkeeping). Two files with the same digest give the
//! same outputs; frames carry it so a node rejects activations from another
//! model.
//!
//! The digest is built from per-tensor hashes so that a shard file, which
//! holds only some tensors, can carry the hashes of all of them, check its
//! own, and re-derive its parent's digest without the other shards.

use rayon::prelude::*;

use crate::gguf::{put_string, put_value, GgufFile, TensorInfo};
use crate::{Error, Result};

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Result<Digest> {
        let bad = || Error::invalid("digest", format!("'{s}' is not 64 hexadecimal digits"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Digest(out))
    }

    /// BLAKE3 of arbitrary bytes (used for output digests too).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Whether a metadata key is part of the identity.
pub fn key_affects_compute(key: &str) -> bool {
    !(key.starts_with("strata.shard.") || key.starts_with("general."))
        || key == "general.architecture"
}

/// Hash of the identity-relevant metadata, keys in sorted order.
pub fn metadata_hash(file: &GgufFile) -> Digest {
    let mut kv: Vec<_> = file
        .metadata()
        .iter()
        .filter(|(k, _)| key_affects_compute(k))
        .collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buf = Vec::new();
    for (k, v) in kv {
        put_string(&mut buf, k);
        buf.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(&mut buf, v);
    }
    Digest::of(&buf)
}

/// Hash of one tensor's description and bytes.
pub fn tensor_hash(info: &TensorInfo, data: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&(info.name.len() as u64).to_le_bytes());
    h.update(info.name.as_bytes());
    h.update(&info.ty.id().to_le_bytes());
    h.update(&(info.dims.len() as u32).to_le_bytes());
    for d in &info.dims {
        h.update(&d.to_le_bytes());
    }
    h.update(data);
    Digest(*h.finalize().as_bytes())
}

/// Combine the metadata hash and the per-tensor hashes (any order; they are
/// sorted by name here) into the model digest.
pub fn combine(meta: &Digest, tensors: &[(String, Digest)]) -> Digest {
    let mut sorted: Vec<&(String, Digest)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    h.update(b"strata-model-digest-v1\0");
    h.update(&meta.0);
    h.update(&(sorted.len() as u64).to_le_bytes());
    for (name, d) in sorted {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&d.0);
    }
    Digest(*h.finalize().as_bytes())
}

/// Hashes of every tensor of a file, computed in parallel.
pub fn tensor_hashes(file: &GgufFile) -> Vec<(String, Digest)> {
    file.tensors()
        .par_iter()
        .map(|t| (t.name.clone(), tensor_hash(t, file.tensor_data(t))))
        .collect()
}

/// The digest of a complete model file (reads every tensor).
pub fn model_digest(file: &GgufFile) -> Digest {
    combine(&metadata_hash(file), &tensor_hashes(file))
}
