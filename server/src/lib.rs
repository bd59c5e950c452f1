//! `strata serve`: an OpenAI-compatible HTTP server over the library's
//! scheduler. Lives in its own crate so that the library and its C ABI stay
//! free of tokio, axum and llguidance.

pub mod constraint;
