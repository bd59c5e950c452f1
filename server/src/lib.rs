//! `strata serve`: an OpenAI-compatible HTTP server over the library's
//! scheduler. Lives in its own crate so that the library and its C ABI stay
//! free of tokio, axum and llguidance.
//!
//! - [`server`]: routes, the bridge to [`strata::scheduler::Scheduler`],
//!   streaming, authentication, shutdown; [`run`] serves until a signal.
//! - [`params`]: request bodies, read and checked field by field.
//! - [`openai`]: the response objects and stream chunks.
//! - [`error`]: errors in OpenAI's shape, and the library's refusals mapped
//!   to HTTP statuses.
//! - [`metrics`]: `/metrics` in Prometheus' text format.
//! - [`template`]: chat templates (also used by `strata chat`).
//! - [`constraint`]: JSON-constrained decoding through llguidance.

pub mod constraint;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod params;
pub mod server;
pub mod template;

pub use server::{run, ServeOptions, BODY_LIMIT};
