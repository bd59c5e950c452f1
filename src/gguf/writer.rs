//! The GGUF writer, the reader's twin: tools and tests use it to write
//! models (synthetic ones, shard files, copies with changed metadata).

use std::io::Write;
use std::path::Path;

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// Tensor bytes to write: owned, or borrowed (e.g. from a mapped file).
pub enum TensorData<'a> {
    Owned(Vec<u8>),
    Borrowed(&'a [u8]),
}

impl TensorData<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            TensorData::Owned(v) => v,
            TensorData::Borrowed(b) => b,
        }
    }
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: TensorData<'a>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Set a metadata value, replacing an earlier one with the same key.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Remove a metadata key if present.
    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Add a tensor. `dims` are innermost first; `data` must hold exactly the
    /// bytes that `ty` and `dims` imply.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
        data: TensorData<'a>,
    ) -> Result<()> {
        let name = name.into();
        let bad = |reason: String| Error::BadTensor {
            name: name.clone(),
            reason,
        };
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dimensions (1 to {MAX_DIMS})", dims.len())));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::DuplicateName {
                kind: "tensor",
                name,
                offset: 0,
            });
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("element count overflows".into()))?;
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {ty} block size {}",
                dims[0],
                ty.block_size()
            )));
        }
        let expected = ty.row_bytes(n).unwrap_or(u64::MAX);
        if data.bytes().len() as u64 != expected {
            return Err(bad(format!(
                "{} bytes of data, {ty} {dims:?} needs {expected}",
                data.bytes().len()
            )));
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(())
    }

    /// Replace the data of a tensor already added (same size required).
    pub fn replace_tensor_data(&mut self, name: &str, data: TensorData<'a>) -> Result<()> {
        let t = self
            .tensors
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        if t.data.bytes().len() != data.bytes().len() {
            return Err(Error::BadTensor {
                name: name.to_string(),
                reason: format!(
                    "replacement has {} bytes, the tensor has {}",
                    data.bytes().len(),
                    t.data.bytes().len()
                ),
            });
        }
        t.data = data;
        Ok(())
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Write the file to any writer.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let align = self.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_string(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.bytes().len() as u64).next_multiple_of(align);
        }
        let zeros = vec![0u8; align as usize];
        let pad = |p: u64| (p.next_multiple_of(align) - p) as usize;
        w.write_all(&header)?;
        w.write_all(&zeros[..pad(header.len() as u64)])?;
        for t in &self.tensors {
            let b = t.data.bytes();
            w.write_all(b)?;
            w.write_all(&zeros[..pad(b.len() as u64)])?;
        }
        Ok(())
    }

    /// Write the file to `path` (through a temporary file renamed into place).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("gguf.part");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        self.write_to(&mut w).map_err(io)?;
        w.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The file as bytes in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(elem, items) => {
            // An array's declared element type wins; mixed arrays cannot be
            // expressed in GGUF, so elements of another type are written as
            // they are (the reader would reject such a file).
            let elem = items.first().map(|i| i.value_type()).unwrap_or(*elem);
            out.extend_from_slice(&(elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
    }
}

/// Convenience constructors for metadata arrays.
impl Value {
    pub fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array(
            ValueType::String,
            items
                .iter()
                .map(|s| Value::String(s.as_ref().to_string()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn sample() -> GgufWriter<'static> {
        let mut w = GgufWriter::new();
        w.set("general.architecture", Value::String("llama".into()));
        w.set("a.u8", Value::U8(7));
        w.set("a.i64", Value::I64(-5));
        w.set("a.f64", Value::F64(0.25));
        w.set("a.bool", Value::Bool(true));
        w.set(
            "a.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
                    Value::Array(ValueType::String, vec![Value::String("x".into())]),
                ],
            ),
        );
        w.set("a.empty", Value::Array(ValueType::F32, vec![]));
        let data: Vec<u8> = (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.add_tensor("t.f32", GgmlType::F32, &[16, 4], TensorData::Owned(data))
            .unwrap();
        w.add_tensor(
            "t.q8",
            GgmlType::Q8_0,
            &[32],
            TensorData::Owned(vec![1u8; 34]),
        )
        .unwrap();
        w
    }

    #[test]
    fn round_trip() {
        let w = sample();
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.metadata(), w.metadata());
        assert_eq!(f.get("a.i64").and_then(|v| v.as_i64()), Some(-5));
        let t = f.tensor("t.f32").unwrap();
        assert_eq!(t.dims, vec![16, 4]);
        let d = f.tensor_data(t);
        assert_eq!(d.len(), 256);
        assert_eq!(f32::from_le_bytes(d[4..8].try_into().unwrap()), 1.0);
        let q = f.tensor("t.q8").unwrap();
        assert_eq!(f.tensor_data(q), &[1u8; 34][..]);
        assert_eq!(q.offset % 32, 0);
    }

    #[test]
    fn writer_rejects_bad_tensors() {
        let mut w = GgufWriter::new();
        assert!(w
            .add_tensor("x", GgmlType::Q4_0, &[16], TensorData::Owned(vec![0; 9]))
            .is_err());
        assert!(w
            .add_tensor("x", GgmlType::F32, &[2], TensorData::Owned(vec![0; 7]))
            .is_err());
        w.add_tensor("x", GgmlType::F32, &[2], TensorData::Owned(vec![0; 8]))
            .unwrap();
        assert!(matches!(
            w.add_tensor("x", GgmlType::F32, &[2], TensorData::Owned(vec![0; 8])),
            Err(Error::DuplicateName { .. })
        ));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes();
        let full = GgufFile::from_bytes(bytes.clone()).unwrap();
        let data_end = full
            .tensors()
            .iter()
            .map(|t| full.data_offset() + t.offset + t.size)
            .max()
            .unwrap() as usize;
        for n in 0..bytes.len() {
            // A prefix that cuts into the header or the data is an error;
            // one that only drops trailing padding is still a valid file.
            let r = GgufFile::from_bytes(bytes[..n].to_vec());
            assert_eq!(r.is_err(), n < data_end, "prefix {n}");
        }
        let header_len = GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize;
        for i in 0..header_len * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            // Either an error or a valid parse; never a panic.
            let _ = GgufFile::from_bytes(b);
        }
    }

    #[test]
    fn specific_errors() {
        let good = sample().to_bytes();
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            GgufFile::from_bytes(b),
            Err(Error::BadMagic { .. })
        ));
        let mut b = good.clone();
        b[4] = 9;
        assert!(matches!(
            GgufFile::from_bytes(b),
            Err(Error::UnsupportedVersion { found: 9 })
        ));
        let mut b = good.clone();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            GgufFile::from_bytes(b),
            Err(Error::Malformed { .. })
        ));
        let mut b = good.clone();
        b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            GgufFile::from_bytes(b),
            Err(Error::Malformed { .. })
        ));
        // Invalid UTF-8 in the first key ("general.architecture").
        let mut b = good.clone();
        b[32] = 0xff;
        assert!(matches!(
            GgufFile::from_bytes(b),
            Err(Error::InvalidUtf8 { .. })
        ));
        // The same key twice.
        let mut w = GgufWriter::new();
        w.set("k", Value::U8(1));
        let b = w.to_bytes();
        let kv = &b[24..24 + 14]; // key length (8) + "k" + type (4) + value (1)
        let mut dup = b[..24].to_vec();
        dup[16..24].copy_from_slice(&2u64.to_le_bytes());
        dup.extend_from_slice(kv);
        dup.extend_from_slice(kv);
        assert!(matches!(
            GgufFile::from_bytes(dup),
            Err(Error::DuplicateName { .. })
        ));
    }
}
