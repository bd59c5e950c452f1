//! Strata: an embeddable LLM inference runtime for GGUF models.
//!
//! Load a [`Model`] (or a range of its layers), open [`Session`]s on it, and
//! generate text or run shard forwards. See the README for an overview of the
//! modules.

pub mod draft;
pub mod error;
pub mod ffi;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod model_cache;
pub mod ops;
pub mod perplexity;
pub mod quant;
pub mod receipt;
#[cfg(feature = "llama-cpp")]
pub mod reference;
pub mod sampler;
pub mod scheduler;
pub mod session;
pub mod shard;
pub mod stop;
pub mod synth;
pub mod tokenizer;

pub use draft::{Draft, DraftStats, Lookup};
pub use error::{Error, Result};
pub use generate::{Completion, GenerateParams, StopReason, Timings, TokenEvent, TokenStream};
pub use model::{BatchItem, Input, LoadOptions, Logits, Model, Numerics, Output};
pub use session::{Session, SessionInput, SessionOptions};

/// The library's version (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The target triple the library was built for.
pub const BUILD_TARGET: &str = env!("STRATA_BUILD_TARGET");
