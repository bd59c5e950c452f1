//! GGUF: the file format of quantized models. A reader that memory-maps a
//! file and hands out zero-copy views of tensor data, and its twin, a writer.
//!
//! Layout (little-endian): magic `GGUF`, version (2 or 3), tensor count (u64),
//! metadata count (u64), metadata key/value pairs, tensor infos (name, dims,
//! type, offset), padding to `general.alignment` (default 32), tensor data.

mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, TensorInfo};
pub use value::{Value, ValueType};
pub(crate) use writer::{put_string, put_value};
pub use writer::{GgufWriter, TensorData};

/// `GGUF` read as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (as in ggml).
pub const MAX_DIMS: usize = 4;
