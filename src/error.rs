//! The one error type of the library. Every variant names what was wrong and
//! where (file offset, tensor name, expected vs found), so a caller can act on
//! it and a person can read it.

use std::path::PathBuf;

/// `'PATH' is ` before a message about a file, when there is one.
fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("'{}' is ", p.display()))
        .unwrap_or_default()
}

/// Everything that can go wrong in Strata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error on '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}not a GGUF file: magic {found:#010x} at offset 0 (expected 0x46554747, \"GGUF\")", file_prefix(.path))]
    BadMagic {
        /// The file, when the image came from one.
        path: Option<PathBuf>,
        found: u32,
    },
    #[error("unsupported GGUF version {found} at offset 4 (supported: 2, 3)")]
    UnsupportedVersion { found: u32 },
    #[error("GGUF file truncated while reading {what}: {needed} bytes needed at offset {offset}, but the file has {len}")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("malformed GGUF at offset {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("duplicate {kind} '{name}' at offset {offset}")]
    DuplicateName {
        kind: &'static str,
        name: String,
        offset: u64,
    },
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    InvalidUtf8 { what: &'static str, offset: u64 },
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    #[error("shard tensor '{tensor}' does not match the hash its parent model recorded: the shard file was altered or damaged")]
    ShardTensorMismatch { tensor: String },
    #[error("tensor '{name}' has unknown type id {id}")]
    UnknownTensorType { name: String, id: u32 },
    #[error("tensor '{name}' has type {ty}, which {context} does not support")]
    UnsupportedTensorType {
        name: String,
        ty: &'static str,
        context: &'static str,
    },
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("unknown architecture '{name}' (supported: {supported})")]
    UnknownArchitecture { name: String, supported: String },
    #[error("unsupported tokenizer model '{0}' (supported: gpt2, llama)")]
    UnsupportedTokenizer(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("context full: {needed} positions needed, the session's limit is {limit}")]
    ContextFull { needed: usize, limit: usize },
    #[error("empty prompt: at least one token is needed")]
    EmptyPrompt,
    #[error("token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("malformed frame: {field}: {reason}")]
    FrameMalformed { field: &'static str, reason: String },
    #[error("frame checksum mismatch: the frame was corrupted in transit")]
    FrameChecksum,
    #[error("frame is for model {found}, this node serves {expected}")]
    FrameWrongModel { expected: String, found: String },
    #[error("frame enters at layer {found}, this shard starts at layer {expected}")]
    FrameWrongBoundary { expected: u32, found: u32 },
    #[error("frame rows are {found} wide, this shard expects {expected}")]
    FrameWrongWidth { expected: u32, found: u32 },
    #[error("frame starts at position {found}, but session {session} holds only {held} positions")]
    FrameWrongPosition { session: u64, held: u64, found: u64 },
    #[error("frame carries {found}, this shard takes {expected}")]
    FrameWrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("session limit reached: {limit} sessions are open")]
    TooManySessions { limit: usize },
    #[error("unknown session {0}")]
    UnknownSession(u64),
    #[error("network error talking to {addr}: {source}")]
    Network {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} answered with an error: {message}")]
    Remote { addr: String, message: String },
    #[error("invalid parameter '{name}': {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error("the request queue is full ({limit} requests waiting); retry later")]
    QueueFull { limit: usize },
    #[error("the request needs {needed} bytes of KV cache, more than the budget of {budget}")]
    KvBudget { needed: usize, budget: usize },
    #[error("the scheduler has stopped")]
    SchedulerStopped,
    #[error("malformed receipt: {field}: {reason}")]
    ReceiptMalformed { field: &'static str, reason: String },
    #[error("{what} needs a model loaded with Numerics::BatchInvariant (only that mode gives the same bits however the tokens are split into forward calls)")]
    NeedsBatchInvariant { what: &'static str },
    #[error("KL-divergence base file: {reason}")]
    KlBaseMalformed { reason: String },
    #[error("perplexity: {reason}")]
    PerplexityInput { reason: String },
    #[error("batch item {index}: {source}")]
    BatchItem {
        index: usize,
        #[source]
        source: Box<Error>,
    },
}

/// Result with Strata's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// This error as item `index`'s of a batch of `len` items (a batch of
    /// one reports the error itself).
    pub(crate) fn in_batch(self, index: usize, len: usize) -> Error {
        if len == 1 {
            self
        } else {
            Error::BatchItem {
                index,
                source: Box::new(self),
            }
        }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
