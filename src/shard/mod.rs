//! Shard execution: a model cut into contiguous layer ranges, each served by
//! a node that loads only its range, with hidden states flowing between
//! nodes in checksummed, versioned frames.
//!
//! - [`digest`]: the model identity that shard files and frames carry.
//! - [`split`]: per-shard GGUF files.
//! - [`frame`]: the activation wire format.
//! - [`node`]: a loaded shard serving sessions frame by frame.
//! - [`plan`]: memory estimates and layer ranges for a set of nodes.
//! - [`verify`]: stamps remembering shard files whose tensors were checked.
//!
//! Determinism: a shard's output bits depend only on the model and the
//! inputs, not on the thread count nor on how a prompt is split into forward
//! calls (every output element is computed by one task in a fixed order, and
//! each token's activations are quantized on their own). See
//! `docs/determinism.md` for what is and is not guaranteed.

pub mod digest;
pub mod frame;
pub mod node;
pub mod plan;
pub mod split;
pub mod transport;
pub mod verify;

pub use digest::Digest;
pub use frame::{DType, Frame, FrameKind};
pub use node::{ForwardResult, NodeLimits, ShardNode};
pub use plan::{plan, Assignment, MemoryEstimate, ModelCost, NodeSpec};
pub use split::{even_ranges, parse_ranges, split, ShardInfo};
pub use verify::Verified;
