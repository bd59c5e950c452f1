//! The GGUF reader. It parses the header of a memory-mapped (or owned) byte
//! buffer with every count, length and offset checked against the buffer, so
//! no input can make it panic, allocate absurdly or read out of bounds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// Deepest nesting of arrays accepted (guards the parser's stack).
const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as ggml orders them.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes (derived from type and dims).
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of rows: all dimensions but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Number of values per row (the first dimension).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An open GGUF file: parsed header plus the mapped bytes.
pub struct GgufFile {
    storage: Storage,
    /// The path given to [`GgufFile::open`] and the file's metadata as it
    /// was when mapped (`None` for an image from memory).
    source: Option<(PathBuf, std::fs::Metadata)>,
    version: u32,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and parse a file. Tensor data is not read until used.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        // SAFETY: the mapping is read-only. If another process truncates or
        // rewrites the file while it is mapped, reads may fault or see new
        // bytes; this is the usual contract of memory-mapped model files.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let mut parsed = Self::parse(Storage::Mapped(map)).map_err(|e| match e {
            Error::BadMagic { found, .. } => Error::BadMagic {
                path: Some(path.to_path_buf()),
                found,
            },
            e => e,
        })?;
        parsed.source = Some((path.to_path_buf(), meta));
        Ok(parsed)
    }

    /// The path the file was opened from and its metadata as it was when
    /// mapped (size, modification time, inode), or `None` for an image
    /// parsed from memory.
    pub fn source(&self) -> Option<(&Path, &std::fs::Metadata)> {
        self.source.as_ref().map(|(p, m)| (p.as_path(), m))
    }

    /// Parse a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile> {
        let mut c = Cursor {
            buf: storage.bytes(),
            pos: 0,
        };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic {
                path: None,
                found: magic,
            });
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion { found: version });
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // Each key/value needs at least 8 (key length) + 4 (type) + 1 bytes,
        // each tensor info at least 8 + 4 + 4 + 8: reject counts the file
        // cannot possibly hold before allocating for them.
        c.check_count(n_kv, 13, "metadata count")?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let at = c.pos as u64;
            let key = c.string("metadata key")?;
            let ty = c.value_type("metadata value type")?;
            let value = c.value(ty, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::DuplicateName {
                    kind: "metadata key",
                    name: key,
                    offset: at,
                });
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let a = metadata[i].1.as_u64().unwrap_or(0);
                if a == 0 || !a.is_power_of_two() || a > 1 << 20 {
                    return Err(Error::Malformed {
                        offset: 0,
                        reason: format!(
                            "general.alignment must be a power of two up to 1 MiB, found {}",
                            metadata[i].1
                        ),
                    });
                }
                a
            }
        };

        c.check_count(n_tensors, 24, "tensor count")?;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let at = c.pos as u64;
            let info = c.tensor_info(alignment)?;
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(Error::DuplicateName {
                    kind: "tensor",
                    name: info.name,
                    offset: at,
                });
            }
            tensors.push(info);
        }

        let header_end = c.pos as u64;
        let data_offset = align_up(header_end, alignment).ok_or_else(|| Error::Malformed {
            offset: header_end,
            reason: "data offset overflows".into(),
        })?;
        let file_len = c.buf.len() as u64;
        let data_len = file_len.saturating_sub(data_offset);
        check_tensor_extents(&tensors, data_offset, data_len, file_len)?;

        Ok(GgufFile {
            storage,
            source: None,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data, from `general.alignment` or the default 32.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset where the data section begins.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A required string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong(key, "a string", v))
    }

    /// A required non-negative integer value (any integer type).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong(key, "a non-negative integer", v))
    }

    /// A required integer that fits a usize and is at most `max`.
    pub fn get_usize_max(&self, key: &str, max: u64) -> Result<usize> {
        let n = self.get_u64(key)?;
        if n > max {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!("{key} = {n} exceeds the supported maximum {max}"),
            });
        }
        Ok(n as usize)
    }

    /// A required float value.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| wrong(key, "a float", v))
    }

    /// A required array value.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong(key, "an array", v))
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor: a view into the mapping, no copy. The info must
    /// come from this file (its extent was checked when the file was parsed).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // Checked at parse time; the checked arithmetic and `get` keep an
        // info from another file from panicking.
        let range = self
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| Some(s as usize..s.checked_add(info.size)? as usize));
        range
            .and_then(|r| self.storage.bytes().get(r))
            .unwrap_or(&[])
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
    Error::WrongType {
        key: key.to_string(),
        expected,
        found: v.type_name(),
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

/// Every tensor lies inside the data section and no two overlap.
fn check_tensor_extents(
    tensors: &[TensorInfo],
    data_offset: u64,
    data_len: u64,
    file_len: u64,
) -> Result<()> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    let mut prev_end = 0u64;
    let mut prev_name = "";
    for &i in &order {
        let t = &tensors[i];
        let end = t.offset.checked_add(t.size).unwrap_or(u64::MAX);
        if end > data_len {
            return Err(Error::Truncated {
                what: format!("data of tensor '{}'", t.name),
                offset: data_offset.saturating_add(t.offset),
                needed: t.size,
                len: file_len,
            });
        }
        if t.offset < prev_end {
            return Err(Error::BadTensor {
                name: t.name.clone(),
                reason: format!(
                    "data at offset {} overlaps tensor '{}', which ends at {}",
                    t.offset, prev_name, prev_end
                ),
            });
        }
        prev_end = end;
        prev_name = &t.name;
    }
    Ok(())
}

/// A bounds-checked little-endian reader over the header.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(Error::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Fail if `count` items of at least `min_size` bytes cannot fit in
    /// what is left of the buffer.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if count.saturating_mul(min_size) > remaining {
            return Err(Error::Malformed {
                offset: self.pos as u64,
                reason: format!(
                    "{what} {count} cannot fit in the {remaining} bytes left in the file"
                ),
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        let len = self.u64(what)?;
        let at = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidUtf8 { what, offset: at })
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.pos as u64;
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| Error::Malformed {
            offset: at,
            reason: format!("unknown metadata value type {id}"),
        })
    }

    fn value(&mut self, ty: ValueType, depth: usize) -> Result<Value> {
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(W)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(W)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(W)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(W)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(W)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(W)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(W)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(W)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(W)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(W)?)),
            ValueType::Bool => {
                let at = self.pos as u64;
                match self.array::<1>(W)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(Error::Malformed {
                            offset: at,
                            reason: format!("bool value {b} is neither 0 nor 1"),
                        })
                    }
                }
            }
            ValueType::String => Value::String(self.string("metadata string")?),
            ValueType::Array => {
                let at = self.pos as u64;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::Malformed {
                        offset: at,
                        reason: format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    });
                }
                let elem = self.value_type("array element type")?;
                let n = self.u64("array length")?;
                // Strings need 8 bytes each at least, arrays 12, scalars their size.
                let min = elem.scalar_size().unwrap_or(match elem {
                    ValueType::String => 8,
                    _ => 12,
                });
                self.check_count(n, min as u64, "array length")?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let name = self.string("tensor name")?;
        let at = self.pos as u64;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(Error::Malformed {
                offset: at,
                reason: format!("tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let type_id = self.u32("tensor type")?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownTensorType {
            name: name.clone(),
            id: type_id,
        })?;
        let offset = self.u64("tensor offset")?;
        let bad = |reason: String| Error::BadTensor {
            name: name.clone(),
            reason,
        };
        let mut n: u64 = 1;
        for &d in &dims {
            if d > i64::MAX as u64 {
                return Err(bad(format!("dimension {d} is out of range")));
            }
            n = n
                .checked_mul(d)
                .ok_or_else(|| bad(format!("element count overflows (dims {dims:?})")))?;
        }
        let row = dims.first().copied().unwrap_or(1);
        if row % ty.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {row} is not a multiple of the {} block size {}",
                ty.name(),
                ty.block_size()
            )));
        }
        let size = ty
            .row_bytes(n)
            .ok_or_else(|| bad(format!("byte size overflows (dims {dims:?})")))?;
        if offset % alignment != 0 {
            return Err(bad(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        })
    }
}
