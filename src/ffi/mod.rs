//! The C ABI: `include/strata.h` is generated from this module by cbindgen
//! (see `cbindgen.toml`; `tests/ffi_header.rs` fails when the committed
//! header differs from what this code generates).
//!
//! The conventions every function follows are written once, at the top of
//! the header (the `header` text in `cbindgen.toml`). In Rust terms:
//!
//! - every `extern "C"` body runs inside `ffi_guard!`, which catches panics
//!   (a panic becomes `STRATA_PANIC`, never an abort) and turns a
//!   `boundary::Failure` into a status plus the thread's last error;
//! - arguments are read through `args`, which checks every pointer,
//!   length, alignment, UTF-8 and `struct_size` before any work is done, so
//!   a call that fails on a bad argument changes nothing;
//! - out-parameters are `args::Out` / `args::OutBuf` values, written only
//!   at the end of a successful call.
//!
//! Files, one per thing owned: `boundary` (the panic boundary), `status`
//! (status codes), `error` (thread-local last error), `args` (argument
//! checks and copy-out), `log` (the log callback), `model`, `tokenize`,
//! `session`, `sampler`, `generate`, `receipt`, `scheduler`, `frame`,
//! `shard`, `split`; and, with the `ffi-test-panic` feature only, `test_panic` (a
//! hook for the C tests, not in the header).

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

// The macros come first: `macro_rules!` scope is textual.

/// The one wrapper every `extern "C"` body goes through.
///
/// - `ffi_guard!({ ...; Ok(()) })`: the body returns [`FfiResult`]; the
///   function returns `strata_status`.
/// - `ffi_guard!(@value DEFAULT, { ... })`: the body returns a value; a
///   panic returns `DEFAULT` (and sets the last error).
macro_rules! ffi_guard {
    (@value $on_panic:expr, $body:block) => {
        $crate::ffi::boundary::guard_value($on_panic, move || $body)
    };
    ($body:block) => {
        $crate::ffi::boundary::guard_status(move || -> $crate::ffi::boundary::FfiResult { $body })
    };
}

/// Log through [`log::emit`] when the level is enabled (arguments are not
/// formatted otherwise).
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::ffi::log::enabled($level) {
            $crate::ffi::log::emit($level, format_args!($($arg)*));
        }
    };
}
macro_rules! log_error { ($($arg:tt)*) => { log_at!($crate::ffi::log::STRATA_LOG_ERROR, $($arg)*) }; }
macro_rules! log_warn { ($($arg:tt)*) => { log_at!($crate::ffi::log::STRATA_LOG_WARN, $($arg)*) }; }
macro_rules! log_info { ($($arg:tt)*) => { log_at!($crate::ffi::log::STRATA_LOG_INFO, $($arg)*) }; }
macro_rules! log_debug { ($($arg:tt)*) => { log_at!($crate::ffi::log::STRATA_LOG_DEBUG, $($arg)*) }; }

mod args;
mod boundary;

// Declared in the order the header presents them.
pub mod error;
pub mod frame;
pub mod generate;
pub mod log;
pub mod model;
pub mod receipt;
pub mod sampler;
pub mod scheduler;
pub mod session;
pub mod shard;
pub mod split;
pub mod status;
pub mod tokenize;

// Only for the C test suite: an export that panics (see test_panic.rs).
#[cfg(feature = "ffi-test-panic")]
pub mod test_panic;

use std::ffi::c_char;

pub use error::*;
pub use frame::*;
pub use generate::*;
pub use log::{
    strata_log_fn, strata_log_level, strata_set_log_callback, STRATA_LOG_DEBUG, STRATA_LOG_ERROR,
    STRATA_LOG_INFO, STRATA_LOG_WARN,
};
pub use model::*;
pub use receipt::*;
pub use sampler::*;
pub use scheduler::*;
pub use session::*;
pub use shard::*;
pub use split::*;
pub use status::*;
pub use tokenize::*;

/// Major version of the library (the `version` in Cargo.toml). A test checks
/// these macros against Cargo.toml.
pub const STRATA_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const STRATA_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const STRATA_VERSION_PATCH: u32 = 0;
/// Version of the binary interface described by this header. It changes
/// only when a change breaks programs built against an older header
/// (a removed or changed function, a reordered struct); appending a struct
/// field or adding a function does not change it. Compare it with
/// strata_abi_version() at run time.
pub const STRATA_ABI_VERSION: u32 = 1;

/// Length of a model digest or an output digest, in bytes (BLAKE3).
pub const STRATA_DIGEST_LEN: u32 = 32;

/// The library's version as a NUL-terminated string, e.g. "0.1.0".
/// The string is static: never free it.
#[no_mangle]
pub extern "C" fn strata_version() -> *const c_char {
    ffi_guard!(@value std::ptr::null(), {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
    })
}

/// The ABI version of the loaded library (STRATA_ABI_VERSION of the header
/// it was built from). A program should refuse to run when it differs from
/// the STRATA_ABI_VERSION it was compiled with.
#[no_mangle]
pub extern "C" fn strata_abi_version() -> u32 {
    ffi_guard!(@value 0, { STRATA_ABI_VERSION })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(
            STRATA_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            STRATA_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            STRATA_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        let v = unsafe { std::ffi::CStr::from_ptr(strata_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(strata_abi_version(), STRATA_ABI_VERSION);
    }
}
