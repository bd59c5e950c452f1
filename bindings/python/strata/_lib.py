"""The C interface of Strata (include/strata.h) declared for ctypes.

Only this module knows the C names and layouts; the rest of the package
uses the names declared here. Keep it in step with include/strata.h (the
tests check every struct's size against the library's behaviour).
"""

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

ABI_VERSION = 1

# Status codes (strata_status).
STATUS_NAMES = {
    0: "STRATA_OK",
    1: "STRATA_INVALID_ARGUMENT",
    2: "STRATA_NULL_POINTER",
    3: "STRATA_INVALID_UTF8",
    4: "STRATA_STRUCT_SIZE",
    5: "STRATA_BUFFER_TOO_SMALL",
    6: "STRATA_BUSY",
    7: "STRATA_CANCELLED",
    8: "STRATA_INVALID_STATE",
    20: "STRATA_IO",
    21: "STRATA_MALFORMED_MODEL",
    22: "STRATA_UNSUPPORTED",
    23: "STRATA_NOT_FOUND",
    24: "STRATA_TOKENIZER",
    25: "STRATA_SHARD_TENSOR_MISMATCH",
    40: "STRATA_TOKEN_OUT_OF_RANGE",
    41: "STRATA_CONTEXT_FULL",
    42: "STRATA_EMPTY_INPUT",
    43: "STRATA_WRONG_SHARD",
    60: "STRATA_FRAME_MALFORMED",
    61: "STRATA_FRAME_CHECKSUM",
    62: "STRATA_FRAME_WRONG_MODEL",
    63: "STRATA_FRAME_WRONG_KIND",
    64: "STRATA_FRAME_WRONG_BOUNDARY",
    65: "STRATA_FRAME_WRONG_WIDTH",
    66: "STRATA_FRAME_WRONG_POSITION",
    67: "STRATA_TOO_MANY_SESSIONS",
    68: "STRATA_UNKNOWN_SESSION",
    70: "STRATA_QUEUE_FULL",
    71: "STRATA_KV_BUDGET",
    72: "STRATA_STOPPED",
    73: "STRATA_TIMEOUT",
    80: "STRATA_NETWORK",
    90: "STRATA_RECEIPT_MALFORMED",
    100: "STRATA_PANIC",
    101: "STRATA_INTERNAL",
}
OK = 0
BUFFER_TOO_SMALL = 5
TIMEOUT = 73

TOKENIZE_ADD_SPECIAL = 1
TOKENIZE_PARSE_SPECIAL = 2
DETOKENIZE_RENDER_SPECIAL = 1
TOKEN_NONE = 0xFFFFFFFF
MODEL_TAKES_TOKENS = 1
MODEL_GIVES_LOGITS = 2
MODEL_SHARD_FILE = 4
MODEL_ADD_BOS = 8
NUMERICS_LLAMA_CPP = 0
NUMERICS_BATCH_INVARIANT = 1
FRAME_HEADER_LEN = 80
FRAME_CHECKSUM_LEN = 32
MAX_TOP_LOGPROBS = 20
EVENT_TOKEN = 1
EVENT_DONE = 2

progress_fn = CFUNCTYPE(c_bool, c_void_p, c_uint32, c_float)
token_fn = CFUNCTYPE(c_bool, c_void_p, c_uint32, POINTER(c_char), c_size_t)
log_fn = CFUNCTYPE(None, c_void_p, c_uint32, POINTER(c_char), c_size_t)


class LoadOptions(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_uint32),
        ("layer_start", c_uint32),
        ("layer_end", c_uint32),
        ("progress", progress_fn),
        ("progress_user_data", c_void_p),
        ("numerics", c_uint32),
    ]


class ModelInfo(Structure):
    _fields_ = [
        (name, c_uint32)
        for name in (
            "struct_size n_layer layer_start layer_end n_embd n_vocab n_ctx_train "
            "n_head n_head_kv n_threads bos eos eot flags numerics"
        ).split()
    ]


class SessionOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_ctx", c_uint32)]


class SamplerParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_uint32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_uint32),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("seed", c_uint64),
    ]


class Str(Structure):
    _fields_ = [("data", c_char_p), ("len", c_size_t)]


class GenerateOptions(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_tokens", c_uint32),
        ("sampler", POINTER(SamplerParams)),
        ("stop", POINTER(Str)),
        ("n_stop", c_size_t),
        ("flags", c_uint32),
        ("on_token", token_fn),
        ("user_data", c_void_p),
        ("lookup_max_draft", c_uint32),
        ("draft_model", c_void_p),
        ("draft_model_max", c_uint32),
    ]


class Completion(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("stop_reason", c_uint32),
        ("n_prompt_tokens", c_uint64),
        ("n_tokens", c_uint64),
        ("prompt_ms", c_double),
        ("generation_ms", c_double),
        ("n_drafted", c_uint64),
        ("n_accepted", c_uint64),
    ]


class FrameInfo(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_uint32),
        ("dtype", c_uint32),
        ("boundary", c_uint32),
        ("model", c_uint8 * 32),
        ("session", c_uint64),
        ("position", c_uint64),
        ("n_tokens", c_uint32),
        ("width", c_uint32),
        ("payload_len", c_uint64),
    ]


class ShardLimits(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_sessions", c_uint32),
        ("n_ctx", c_uint32),
        ("output_dtype", c_uint32),
    ]


class LayerRange(Structure):
    _fields_ = [("start", c_uint32), ("end", c_uint32)]


class SchedulerOptions(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("slots", c_uint32),
        ("n_ctx", c_uint32),
        ("max_queue", c_uint32),
        ("max_batch_tokens", c_uint32),
        ("prefill_chunk", c_uint32),
        ("kv_budget_bytes", c_uint64),
    ]


class RequestParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_tokens", c_uint32),
        ("sampler", POINTER(SamplerParams)),
        ("stop", POINTER(Str)),
        ("n_stop", c_size_t),
        ("logprobs", c_uint32),
        ("top_logprobs", c_uint32),
        ("ignore_eos", c_uint32),
    ]


class RequestEvent(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_uint32),
        ("token", c_uint32),
        ("has_logprob", c_uint32),
        ("logprob", c_float),
        ("n_top", c_uint32),
        ("top_tokens", c_uint32 * MAX_TOP_LOGPROBS),
        ("top_logprobs", c_float * MAX_TOP_LOGPROBS),
        ("finish_reason", c_uint32),
        ("prompt_tokens", c_uint64),
        ("cached_tokens", c_uint64),
        ("completion_tokens", c_uint64),
        ("time_to_first_token_ms", c_double),
        ("total_ms", c_double),
    ]


class SchedulerStats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("slots", c_uint32),
        ("running", c_uint32),
        ("queued", c_uint32),
        ("requests_total", c_uint64),
        ("prompt_tokens_total", c_uint64),
        ("cached_tokens_total", c_uint64),
        ("generated_tokens_total", c_uint64),
        ("ttft_ms_sum", c_double),
        ("ttft_count", c_uint64),
        ("kv_bytes_used", c_uint64),
        ("kv_bytes_budget", c_uint64),
        ("steps_total", c_uint64),
    ]


def new(struct_type):
    """A struct with struct_size set, as every C call expects."""
    s = struct_type()
    s.struct_size = ctypes.sizeof(struct_type)
    return s


def _find_library():
    env = os.environ.get("STRATA_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(repo, "target"))
    for profile in ("release", "debug"):
        p = os.path.join(target, profile, "libstrata.so")
        if os.path.exists(p):
            return p
    found = ctypes.util.find_library("strata")
    if found:
        return found
    raise OSError(
        "libstrata.so not found: set STRATA_LIB, build with `cargo build --release`, "
        "or install it (scripts/install-c.sh)"
    )


lib = ctypes.CDLL(_find_library())

P = c_void_p  # opaque handles
u8p = POINTER(c_uint8)
u32p = POINTER(c_uint32)
f32p = POINTER(c_float)
szp = POINTER(c_size_t)

_SIGNATURES = {
    "strata_version": (c_char_p, []),
    "strata_abi_version": (c_uint32, []),
    "strata_status_name": (c_char_p, [c_int32]),
    "strata_last_error": (c_int32, [POINTER(c_char), c_size_t, szp]),
    "strata_last_error_length": (c_size_t, []),
    "strata_set_log_callback": (c_int32, [log_fn, c_void_p, c_uint32]),
    "strata_load_options_default": (c_int32, [POINTER(LoadOptions)]),
    "strata_model_load": (c_int32, [c_char_p, POINTER(LoadOptions), POINTER(P)]),
    "strata_model_free": (None, [P]),
    "strata_model_get_info": (c_int32, [P, POINTER(ModelInfo)]),
    "strata_model_architecture": (c_int32, [P, POINTER(c_char), c_size_t, szp]),
    "strata_model_meta": (c_int32, [P, c_char_p, c_size_t, POINTER(c_char), c_size_t, szp]),
    "strata_model_meta_count": (c_int32, [P, szp]),
    "strata_model_meta_key": (c_int32, [P, c_size_t, POINTER(c_char), c_size_t, szp]),
    "strata_model_digest": (c_int32, [P, u8p, c_size_t]),
    "strata_tokenize": (c_int32, [P, c_char_p, c_size_t, c_uint32, u32p, c_size_t, szp]),
    "strata_token_to_piece": (c_int32, [P, c_uint32, c_uint32, u8p, c_size_t, szp]),
    "strata_detokenize": (c_int32, [P, u32p, c_size_t, c_uint32, POINTER(c_char), c_size_t, szp]),
    "strata_token_is_eog": (c_int32, [P, c_uint32, POINTER(c_bool)]),
    "strata_session_new": (c_int32, [P, POINTER(SessionOptions), POINTER(P)]),
    "strata_session_free": (None, [P]),
    "strata_session_reset": (c_int32, [P]),
    "strata_session_truncate": (c_int32, [P, c_size_t]),
    "strata_session_position": (c_int32, [P, szp]),
    "strata_session_n_ctx": (c_int32, [P, szp]),
    "strata_session_feed": (c_int32, [P, u32p, c_size_t]),
    "strata_session_logits": (c_int32, [P, f32p, c_size_t, szp]),
    "strata_session_tokens": (c_int32, [P, u32p, c_size_t, szp]),
    "strata_sampler_params_default": (c_int32, [POINTER(SamplerParams)]),
    "strata_sampler_params_greedy": (c_int32, [POINTER(SamplerParams)]),
    "strata_sampler_new": (c_int32, [POINTER(SamplerParams), POINTER(P)]),
    "strata_sampler_free": (None, [P]),
    "strata_sampler_sample": (c_int32, [P, f32p, c_size_t, u32p]),
    "strata_sampler_sample_session": (c_int32, [P, P, u32p]),
    "strata_sampler_accept": (c_int32, [P, c_uint32]),
    "strata_sampler_reset": (c_int32, [P]),
    "strata_generate_options_default": (c_int32, [POINTER(GenerateOptions)]),
    "strata_generate": (c_int32, [P, c_char_p, c_size_t, POINTER(GenerateOptions), POINTER(Completion)]),
    "strata_generate_tokens": (c_int32, [P, u32p, c_size_t, POINTER(GenerateOptions), POINTER(Completion)]),
    "strata_frame_encode_tokens": (
        c_int32,
        [u8p, c_size_t, c_uint64, c_uint64, u32p, c_size_t, u8p, c_size_t, szp],
    ),
    "strata_frame_encode_floats": (c_int32, [POINTER(FrameInfo), f32p, c_size_t, u8p, c_size_t, szp]),
    "strata_frame_decode": (c_int32, [u8p, c_size_t, POINTER(FrameInfo)]),
    "strata_frame_tokens": (c_int32, [u8p, c_size_t, u32p, c_size_t, szp]),
    "strata_frame_values": (c_int32, [u8p, c_size_t, f32p, c_size_t, szp]),
    "strata_frame_payload_digest": (c_int32, [u8p, c_size_t, u8p, c_size_t]),
    "strata_shard_limits_default": (c_int32, [POINTER(ShardLimits)]),
    "strata_shard_new": (c_int32, [P, POINTER(ShardLimits), POINTER(P)]),
    "strata_shard_free": (None, [P]),
    "strata_shard_output_len": (c_int32, [P, u8p, c_size_t, szp]),
    "strata_shard_forward": (c_int32, [P, u8p, c_size_t, u8p, c_size_t, szp]),
    "strata_shard_truncate": (c_int32, [P, c_uint64, c_uint64]),
    "strata_shard_close": (c_int32, [P, c_uint64]),
    "strata_shard_position": (c_int32, [P, c_uint64, POINTER(c_uint64)]),
    "strata_shard_n_sessions": (c_int32, [P, szp]),
    "strata_shard_digest": (c_int32, [P, u8p, c_size_t]),
    "strata_scheduler_options_default": (c_int32, [POINTER(SchedulerOptions)]),
    "strata_request_params_default": (c_int32, [POINTER(RequestParams)]),
    "strata_scheduler_new": (c_int32, [P, POINTER(SchedulerOptions), POINTER(P)]),
    "strata_scheduler_free": (None, [P]),
    "strata_scheduler_get_options": (c_int32, [P, POINTER(SchedulerOptions)]),
    "strata_scheduler_submit": (c_int32, [P, u32p, c_size_t, POINTER(RequestParams), POINTER(c_uint64)]),
    "strata_scheduler_poll": (
        c_int32,
        [P, c_uint64, c_uint32, POINTER(RequestEvent), POINTER(c_char), c_size_t, szp],
    ),
    "strata_scheduler_cancel": (c_int32, [P, c_uint64]),
    "strata_scheduler_get_stats": (c_int32, [P, POINTER(SchedulerStats)]),
    "strata_split": (
        c_int32,
        [c_char_p, POINTER(LayerRange), c_size_t, c_char_p, POINTER(c_char), c_size_t, szp],
    ),
}

for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
