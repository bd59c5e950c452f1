//! Strata: an embeddable LLM inference runtime for GGUF models.

pub mod error;
pub mod quant;

pub use error::{Error, Result};
