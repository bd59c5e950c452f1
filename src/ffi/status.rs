//! Status codes. Numbers are explicit and never reused: a code that stops
//! being returned keeps its number, and new codes take new numbers.

use std::ffi::{c_char, CStr};

use crate::Error;

/// What a call did. STRATA_OK (0) is success; every other value is a
/// failure whose full message strata_last_error() returns. The numbers are
/// part of the ABI: they never change and are never reused. Functions that
/// take a status (strata_status_name) take an `int32_t`, so a value from a
/// newer library is still safe to pass.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum strata_status {
    /// Success.
    STRATA_OK = 0,
    /// An argument has a value the call cannot accept (a bad option value,
    /// an unknown flag bit, a layer range outside the model, ...).
    STRATA_INVALID_ARGUMENT = 1,
    /// A required pointer was NULL (or a non-empty buffer was NULL).
    STRATA_NULL_POINTER = 2,
    /// Text that must be UTF-8 is not.
    STRATA_INVALID_UTF8 = 3,
    /// An option or info struct has a struct_size this library does not
    /// accept (see the conventions above).
    STRATA_STRUCT_SIZE = 4,
    /// An output buffer is too small; the length out-parameter holds the
    /// length needed, and nothing else changed.
    STRATA_BUFFER_TOO_SMALL = 5,
    /// The session or sampler is in use (by another thread, or the call
    /// came from inside one of its own callbacks), or another thread is
    /// polling the same scheduler request; nothing changed.
    STRATA_BUSY = 6,
    /// A callback asked to stop an operation that cannot finish partially
    /// (a model load); nothing was created.
    STRATA_CANCELLED = 7,
    /// The handle is not in a state that allows the call (e.g. no logits
    /// have been computed yet).
    STRATA_INVALID_STATE = 8,
    /// A file could not be opened, read or written.
    STRATA_IO = 20,
    /// A file is not a valid GGUF model (bad magic, truncated, missing or
    /// mistyped key or tensor, ...).
    STRATA_MALFORMED_MODEL = 21,
    /// A valid model uses something this library does not implement (an
    /// architecture, a tensor type, a tokenizer).
    STRATA_UNSUPPORTED = 22,
    /// A metadata key, or a scheduler's request id, does not exist.
    STRATA_NOT_FOUND = 23,
    /// The tokenizer could not handle the input.
    STRATA_TOKENIZER = 24,
    /// A shard file's tensor does not match the hash its parent model
    /// recorded (the file was altered or damaged); nothing was loaded.
    STRATA_SHARD_TENSOR_MISMATCH = 25,
    /// A token id is not below the vocabulary size.
    STRATA_TOKEN_OUT_OF_RANGE = 40,
    /// The session's context cannot hold the tokens; the session is unchanged.
    STRATA_CONTEXT_FULL = 41,
    /// At least one token is needed (an empty prompt or token array).
    STRATA_EMPTY_INPUT = 42,
    /// The model is a shard without the part the call needs (the token
    /// embedding or the output head).
    STRATA_WRONG_SHARD = 43,
    /// A frame is malformed (bad magic, version, kind, dtype, sizes, ...).
    STRATA_FRAME_MALFORMED = 60,
    /// A frame's checksum does not match: it was corrupted.
    STRATA_FRAME_CHECKSUM = 61,
    /// A frame belongs to another model (its digest differs).
    STRATA_FRAME_WRONG_MODEL = 62,
    /// A frame carries the wrong kind of rows for this shard (token ids vs
    /// hidden states).
    STRATA_FRAME_WRONG_KIND = 63,
    /// A frame enters at another layer than this shard starts at.
    STRATA_FRAME_WRONG_BOUNDARY = 64,
    /// A frame's rows have the wrong width for this shard.
    STRATA_FRAME_WRONG_WIDTH = 65,
    /// A frame starts past the end of its session (a gap).
    STRATA_FRAME_WRONG_POSITION = 66,
    /// The shard already has its maximum number of sessions open.
    STRATA_TOO_MANY_SESSIONS = 67,
    /// The shard has no session with that id.
    STRATA_UNKNOWN_SESSION = 68,
    /// The scheduler's request queue is full; retry later.
    STRATA_QUEUE_FULL = 70,
    /// A request needs more KV cache than the scheduler's whole budget.
    STRATA_KV_BUDGET = 71,
    /// The scheduler has stopped and takes no more requests.
    STRATA_STOPPED = 72,
    /// Nothing happened within the timeout the call was given (no event of
    /// a scheduler request); nothing changed.
    STRATA_TIMEOUT = 73,
    /// A network error (not returned by the functions of this header today).
    STRATA_NETWORK = 80,
    /// Bytes that should be a receipt are not a valid one (bad magic,
    /// version, counts, length, root or fingerprint); the last error names
    /// the field.
    STRATA_RECEIPT_MALFORMED = 90,
    /// A bug in Strata: a Rust panic was caught at the boundary. The handle
    /// involved stays usable, but its results are suspect.
    STRATA_PANIC = 100,
    /// An error this version cannot classify more precisely.
    STRATA_INTERNAL = 101,
}

impl strata_status {
    /// The status a library error maps to.
    pub fn of(e: &Error) -> strata_status {
        use strata_status::*;
        #[allow(unreachable_patterns)]
        match e {
            Error::Io { .. } => STRATA_IO,
            Error::BadMagic { .. }
            | Error::UnsupportedVersion { .. }
            | Error::Truncated { .. }
            | Error::Malformed { .. }
            | Error::DuplicateName { .. }
            | Error::InvalidUtf8 { .. }
            | Error::BadTensor { .. }
            | Error::UnknownTensorType { .. }
            | Error::MissingKey(_)
            | Error::WrongType { .. }
            | Error::MissingTensor(_) => STRATA_MALFORMED_MODEL,
            Error::UnsupportedTensorType { .. }
            | Error::UnknownArchitecture { .. }
            | Error::UnsupportedTokenizer(_) => STRATA_UNSUPPORTED,
            Error::Tokenizer(_) => STRATA_TOKENIZER,
            Error::ShardTensorMismatch { .. } => STRATA_SHARD_TENSOR_MISMATCH,
            Error::ContextFull { .. } => STRATA_CONTEXT_FULL,
            Error::EmptyPrompt => STRATA_EMPTY_INPUT,
            Error::TokenOutOfRange { .. } => STRATA_TOKEN_OUT_OF_RANGE,
            Error::FrameMalformed { .. } => STRATA_FRAME_MALFORMED,
            Error::FrameChecksum => STRATA_FRAME_CHECKSUM,
            Error::FrameWrongModel { .. } => STRATA_FRAME_WRONG_MODEL,
            Error::FrameWrongKind { .. } => STRATA_FRAME_WRONG_KIND,
            Error::FrameWrongBoundary { .. } => STRATA_FRAME_WRONG_BOUNDARY,
            Error::FrameWrongWidth { .. } => STRATA_FRAME_WRONG_WIDTH,
            Error::FrameWrongPosition { .. } => STRATA_FRAME_WRONG_POSITION,
            Error::TooManySessions { .. } => STRATA_TOO_MANY_SESSIONS,
            Error::UnknownSession(_) => STRATA_UNKNOWN_SESSION,
            Error::Network { .. } | Error::Remote { .. } => STRATA_NETWORK,
            Error::InvalidParameter { .. } => STRATA_INVALID_ARGUMENT,
            Error::QueueFull { .. } => STRATA_QUEUE_FULL,
            Error::KvBudget { .. } => STRATA_KV_BUDGET,
            Error::SchedulerStopped => STRATA_STOPPED,
            Error::ReceiptMalformed { .. } => STRATA_RECEIPT_MALFORMED,
            Error::NeedsBatchInvariant { .. }
            | Error::KlBaseMalformed { .. }
            | Error::PerplexityInput { .. } => STRATA_INVALID_ARGUMENT,
            Error::BatchItem { source, .. } => strata_status::of(source),
            // A variant added to `Error` later maps here until it gets a code.
            _ => STRATA_INTERNAL,
        }
    }

    /// The constant's name, e.g. "STRATA_CONTEXT_FULL".
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .and_then(|(_, n)| n.to_str().ok())
            .unwrap_or("STRATA_INTERNAL")
    }

    /// The status with this number, if there is one.
    pub fn from_code(code: i32) -> Option<strata_status> {
        Self::ALL
            .iter()
            .find(|(s, _)| *s as i32 == code)
            .map(|(s, _)| *s)
    }

    /// Every status and its name.
    const ALL: &'static [(strata_status, &'static CStr)] = &[
        (strata_status::STRATA_OK, c"STRATA_OK"),
        (
            strata_status::STRATA_INVALID_ARGUMENT,
            c"STRATA_INVALID_ARGUMENT",
        ),
        (strata_status::STRATA_NULL_POINTER, c"STRATA_NULL_POINTER"),
        (strata_status::STRATA_INVALID_UTF8, c"STRATA_INVALID_UTF8"),
        (strata_status::STRATA_STRUCT_SIZE, c"STRATA_STRUCT_SIZE"),
        (
            strata_status::STRATA_BUFFER_TOO_SMALL,
            c"STRATA_BUFFER_TOO_SMALL",
        ),
        (strata_status::STRATA_BUSY, c"STRATA_BUSY"),
        (strata_status::STRATA_CANCELLED, c"STRATA_CANCELLED"),
        (strata_status::STRATA_INVALID_STATE, c"STRATA_INVALID_STATE"),
        (strata_status::STRATA_IO, c"STRATA_IO"),
        (
            strata_status::STRATA_MALFORMED_MODEL,
            c"STRATA_MALFORMED_MODEL",
        ),
        (strata_status::STRATA_UNSUPPORTED, c"STRATA_UNSUPPORTED"),
        (strata_status::STRATA_NOT_FOUND, c"STRATA_NOT_FOUND"),
        (strata_status::STRATA_TOKENIZER, c"STRATA_TOKENIZER"),
        (
            strata_status::STRATA_SHARD_TENSOR_MISMATCH,
            c"STRATA_SHARD_TENSOR_MISMATCH",
        ),
        (
            strata_status::STRATA_TOKEN_OUT_OF_RANGE,
            c"STRATA_TOKEN_OUT_OF_RANGE",
        ),
        (strata_status::STRATA_CONTEXT_FULL, c"STRATA_CONTEXT_FULL"),
        (strata_status::STRATA_EMPTY_INPUT, c"STRATA_EMPTY_INPUT"),
        (strata_status::STRATA_WRONG_SHARD, c"STRATA_WRONG_SHARD"),
        (
            strata_status::STRATA_FRAME_MALFORMED,
            c"STRATA_FRAME_MALFORMED",
        ),
        (
            strata_status::STRATA_FRAME_CHECKSUM,
            c"STRATA_FRAME_CHECKSUM",
        ),
        (
            strata_status::STRATA_FRAME_WRONG_MODEL,
            c"STRATA_FRAME_WRONG_MODEL",
        ),
        (
            strata_status::STRATA_FRAME_WRONG_KIND,
            c"STRATA_FRAME_WRONG_KIND",
        ),
        (
            strata_status::STRATA_FRAME_WRONG_BOUNDARY,
            c"STRATA_FRAME_WRONG_BOUNDARY",
        ),
        (
            strata_status::STRATA_FRAME_WRONG_WIDTH,
            c"STRATA_FRAME_WRONG_WIDTH",
        ),
        (
            strata_status::STRATA_FRAME_WRONG_POSITION,
            c"STRATA_FRAME_WRONG_POSITION",
        ),
        (
            strata_status::STRATA_TOO_MANY_SESSIONS,
            c"STRATA_TOO_MANY_SESSIONS",
        ),
        (
            strata_status::STRATA_UNKNOWN_SESSION,
            c"STRATA_UNKNOWN_SESSION",
        ),
        (strata_status::STRATA_QUEUE_FULL, c"STRATA_QUEUE_FULL"),
        (strata_status::STRATA_KV_BUDGET, c"STRATA_KV_BUDGET"),
        (strata_status::STRATA_STOPPED, c"STRATA_STOPPED"),
        (strata_status::STRATA_TIMEOUT, c"STRATA_TIMEOUT"),
        (strata_status::STRATA_NETWORK, c"STRATA_NETWORK"),
        (
            strata_status::STRATA_RECEIPT_MALFORMED,
            c"STRATA_RECEIPT_MALFORMED",
        ),
        (strata_status::STRATA_PANIC, c"STRATA_PANIC"),
        (strata_status::STRATA_INTERNAL, c"STRATA_INTERNAL"),
    ];
}

/// The name of a status as a static NUL-terminated string, e.g.
/// "STRATA_CONTEXT_FULL"; "STRATA_UNKNOWN_STATUS" for a number this library
/// does not define. Never free the result.
#[no_mangle]
pub extern "C" fn strata_status_name(status: i32) -> *const c_char {
    ffi_guard!(@value c"STRATA_UNKNOWN_STATUS".as_ptr(), {
        strata_status::ALL
            .iter()
            .find(|(s, _)| *s as i32 == status)
            .map_or(c"STRATA_UNKNOWN_STATUS".as_ptr(), |(_, n)| n.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (s, n) in strata_status::ALL {
            assert_eq!(s.name(), n.to_str().unwrap());
            let c = unsafe { CStr::from_ptr(strata_status_name(*s as i32)) };
            assert_eq!(c, *n);
            assert_eq!(strata_status::from_code(*s as i32), Some(*s));
        }
        let c = unsafe { CStr::from_ptr(strata_status_name(12345)) };
        assert_eq!(c.to_str().unwrap(), "STRATA_UNKNOWN_STATUS");
    }
}
