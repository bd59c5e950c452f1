"""Strata from Python: a small Pythonic layer over the C interface
(include/strata.h) through ctypes. No compile step: it loads libstrata.so
from $STRATA_LIB, the repository's target/release, or the system paths.

    import strata
    with strata.Model("SmolLM2-135M-Instruct.Q4_1.gguf") as model:
        session = model.session()
        for token_id, text in session.generate("The capital of France is", max_tokens=16,
                                               sampler=strata.SamplerParams.greedy()):
            print(text, end="", flush=True)

Errors are `strata.Error` with the C status (`.status`, `.name`) and the
library's message. A Model is shared freely between threads; a Session is
used by one thread at a time (another thread gets Error STRATA_BUSY).
"""

import ctypes
import queue
import threading
from ctypes import byref, c_bool, c_char, c_float, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from . import _lib
from ._lib import lib

__all__ = [
    "Error",
    "Model",
    "ModelInfo",
    "Session",
    "Sampler",
    "SamplerParams",
    "Shard",
    "Scheduler",
    "Request",
    "TokenEvent",
    "RequestEnd",
    "FrameInfo",
    "Completion",
    "encode_tokens_frame",
    "encode_floats_frame",
    "decode_frame",
    "frame_tokens",
    "frame_values",
    "frame_digest",
    "split",
    "set_log_callback",
    "version",
    "abi_version",
]

FRAME_TOKENS, FRAME_HIDDEN, FRAME_LOGITS = 0, 1, 2
DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_U32 = 0, 1, 2, 3
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 1, 2, 3, 4
STOP_REASONS = {1: "eog", 2: "max_tokens", 3: "stop_string", 4: "callback", 5: "context_full"}
FINISH_REASONS = {
    1: "eog",
    2: "stop_string",
    3: "max_tokens",
    4: "context_full",
    5: "constraint_end",
    6: "cancelled",
    7: "failed",
}


class Error(Exception):
    """A call into Strata failed: `status` (the C number), `name`
    (e.g. "STRATA_CONTEXT_FULL") and the library's message."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.name = _lib.STATUS_NAMES.get(status, "STRATA_UNKNOWN_STATUS")
        self.message = message
        super().__init__(f"{self.name}: {message}")


def _last_error() -> str:
    n = lib.strata_last_error_length()
    buf = ctypes.create_string_buffer(n + 1)
    lib.strata_last_error(buf, n + 1, None)
    return buf.value.decode("utf-8", "replace")


def _check(status: int) -> None:
    if status != _lib.OK:
        raise Error(status, _last_error())


def _query(call, make_buf, initial: int):
    """Run a copy-out call, growing the buffer once if it was too small."""
    n = c_size_t(0)
    buf = make_buf(initial)
    st = call(buf, initial, byref(n))
    if st == _lib.BUFFER_TOO_SMALL:
        size = n.value + 1
        buf = make_buf(size)
        st = call(buf, size, byref(n))
    _check(st)
    return buf, n.value


def _text_out(call, initial: int = 256) -> str:
    buf, n = _query(call, ctypes.create_string_buffer, initial)
    return buf.raw[:n].decode("utf-8", "replace")


def _bytes_out(call, initial: int = 64) -> bytes:
    buf, n = _query(call, lambda k: (c_uint8 * max(k, 1))(), initial)
    return bytes(buf[:n])


def _u32_array(values: Sequence[int]):
    return (c_uint32 * max(len(values), 1))(*values)


def _u8_array(data: bytes):
    return (c_uint8 * max(len(data), 1)).from_buffer_copy(data if data else b"\0")


def version() -> str:
    return lib.strata_version().decode()


def abi_version() -> int:
    return lib.strata_abi_version()


if abi_version() != _lib.ABI_VERSION:
    raise ImportError(f"libstrata has ABI {abi_version()}, these bindings need {_lib.ABI_VERSION}")


@dataclass
class ModelInfo:
    n_layer: int
    layer_start: int
    layer_end: int
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_head: int
    n_head_kv: int
    n_threads: int
    bos: Optional[int]
    eos: Optional[int]
    eot: Optional[int]
    takes_tokens: bool
    gives_logits: bool
    shard_file: bool
    add_bos: bool
    batch_invariant: bool


@dataclass
class SamplerParams:
    """Sampling parameters; the defaults are the library's (llama.cpp's)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int = 42

    @classmethod
    def greedy(cls) -> "SamplerParams":
        p = _lib.new(_lib.SamplerParams)
        _check(lib.strata_sampler_params_greedy(byref(p)))
        return cls._from_c(p)

    @classmethod
    def default(cls) -> "SamplerParams":
        p = _lib.new(_lib.SamplerParams)
        _check(lib.strata_sampler_params_default(byref(p)))
        return cls._from_c(p)

    @classmethod
    def _from_c(cls, p) -> "SamplerParams":
        return cls(**{f: getattr(p, f) for f in cls.__dataclass_fields__})

    def _to_c(self):
        p = _lib.new(_lib.SamplerParams)
        for f in self.__dataclass_fields__:
            setattr(p, f, getattr(self, f))
        return p


@dataclass
class Completion:
    stop_reason: str
    n_prompt_tokens: int
    n_tokens: int
    prompt_ms: float
    generation_ms: float
    #: Tokens drafted by speculative decoding (lookup=N), and how many held.
    n_drafted: int = 0
    n_accepted: int = 0


@dataclass
class FrameInfo:
    kind: int
    dtype: int
    boundary: int
    model: bytes
    session: int
    position: int
    n_tokens: int
    width: int
    payload_len: int


class _Owned:
    """A library handle owned by a Python object: `handle` (refused once
    closed), `close()` (also on leaving a `with` block and on garbage
    collection). Subclasses name the handle (`_KIND`) and its free
    function (`_FREE`)."""

    _KIND = "handle"
    _FREE = ""
    _h = None

    @property
    def handle(self) -> c_void_p:
        if not self._h:
            raise ValueError(f"the {self._KIND} is closed")
        return self._h

    def close(self) -> None:
        if self._h:
            getattr(lib, self._FREE)(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Model(_Owned):
    """A loaded model or a range of its layers (`layers=(start, end)`).
    `progress(stage, fraction) -> bool` may cancel the load (Error
    STRATA_CANCELLED). `batch_invariant=True` loads it in the
    batch-invariant numerics mode (the same bits however a prompt is split
    into calls) instead of llama.cpp's. Thread-safe; close() (or `with`) frees it, and
    sessions and shards made from it keep it alive."""

    _KIND = "model"
    _FREE = "strata_model_free"

    def __init__(
        self,
        path: str,
        *,
        n_threads: int = 0,
        layers: Optional[Tuple[int, int]] = None,
        progress: Optional[Callable[[int, float], bool]] = None,
        batch_invariant: bool = False,
    ):
        self._h = None
        opts = _lib.new(_lib.LoadOptions)
        _check(lib.strata_load_options_default(byref(opts)))
        opts.n_threads = n_threads
        if batch_invariant:
            opts.numerics = _lib.NUMERICS_BATCH_INVARIANT
        if layers is not None:
            opts.layer_start, opts.layer_end = layers
        errors: List[BaseException] = []
        if progress is not None:

            def trampoline(_ud, stage, fraction):
                try:
                    return bool(progress(stage, fraction))
                except BaseException as e:  # never unwind through C
                    errors.append(e)
                    return False

            opts.progress = _lib.progress_fn(trampoline)
        h = c_void_p()
        st = lib.strata_model_load(str(path).encode(), byref(opts), byref(h))
        if errors:
            raise errors[0]
        _check(st)
        self._h = h


    @property
    def info(self) -> ModelInfo:
        i = _lib.new(_lib.ModelInfo)
        _check(lib.strata_model_get_info(self.handle, byref(i)))
        tok = lambda t: None if t == _lib.TOKEN_NONE else t  # noqa: E731
        return ModelInfo(
            i.n_layer, i.layer_start, i.layer_end, i.n_embd, i.n_vocab, i.n_ctx_train,
            i.n_head, i.n_head_kv, i.n_threads, tok(i.bos), tok(i.eos), tok(i.eot),
            bool(i.flags & _lib.MODEL_TAKES_TOKENS), bool(i.flags & _lib.MODEL_GIVES_LOGITS),
            bool(i.flags & _lib.MODEL_SHARD_FILE), bool(i.flags & _lib.MODEL_ADD_BOS),
            i.numerics == _lib.NUMERICS_BATCH_INVARIANT,
        )  # fmt: skip

    @property
    def architecture(self) -> str:
        return _text_out(lambda b, n, o: lib.strata_model_architecture(self.handle, b, n, o), 32)

    def meta(self, key: str) -> str:
        k = key.encode()
        return _text_out(lambda b, n, o: lib.strata_model_meta(self.handle, k, len(k), b, n, o))

    def meta_keys(self) -> List[str]:
        n = c_size_t()
        _check(lib.strata_model_meta_count(self.handle, byref(n)))
        return [
            _text_out(lambda b, c, o, i=i: lib.strata_model_meta_key(self.handle, i, b, c, o), 64)
            for i in range(n.value)
        ]

    @property
    def digest(self) -> bytes:
        d = (c_uint8 * 32)()
        _check(lib.strata_model_digest(self.handle, d, 32))
        return bytes(d)

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> List[int]:
        t = text.encode()
        flags = (_lib.TOKENIZE_ADD_SPECIAL if add_special else 0) | (
            _lib.TOKENIZE_PARSE_SPECIAL if parse_special else 0
        )
        buf, n = _query(
            lambda b, c, o: lib.strata_tokenize(self.handle, t, len(t), flags, b, c, o),
            lambda k: (c_uint32 * max(k, 1))(),
            len(t) + 8,
        )
        return list(buf[:n])

    def detokenize(self, tokens: Sequence[int], render_special: bool = False) -> str:
        arr = _u32_array(tokens)
        flags = _lib.DETOKENIZE_RENDER_SPECIAL if render_special else 0
        return _text_out(
            lambda b, c, o: lib.strata_detokenize(self.handle, arr, len(tokens), flags, b, c, o),
            len(tokens) * 8 + 16,
        )

    def token_to_piece(self, token: int, render_special: bool = False) -> bytes:
        flags = _lib.DETOKENIZE_RENDER_SPECIAL if render_special else 0
        return _bytes_out(lambda b, c, o: lib.strata_token_to_piece(self.handle, token, flags, b, c, o))

    def is_eog(self, token: int) -> bool:
        out = c_bool()
        _check(lib.strata_token_is_eog(self.handle, token, byref(out)))
        return out.value

    def session(self, n_ctx: int = 0) -> "Session":
        return Session(self, n_ctx)

    def shard(self, max_sessions: int = 64, n_ctx: int = 4096, output_dtype: int = DTYPE_F32) -> "Shard":
        return Shard(self, max_sessions, n_ctx, output_dtype)


class _TokenCallback:
    """Adapts a Python function to strata_token_fn, keeping any exception
    to re-raise after the C call returns (exceptions never cross C)."""

    def __init__(self, fn: Callable[[int, str], bool]):
        self.error: Optional[BaseException] = None

        def trampoline(_ud, token, text, text_len):
            try:
                return bool(fn(token, ctypes.string_at(text, text_len).decode("utf-8", "replace")))
            except BaseException as e:
                self.error = e
                return False

        self.c = _lib.token_fn(trampoline)


class Session(_Owned):
    """One conversation (KV cache) over a model."""

    _KIND = "session"
    _FREE = "strata_session_free"

    def __init__(self, model: Model, n_ctx: int = 0):
        self._h = None
        self.model = model
        opts = _lib.new(_lib.SessionOptions)
        opts.n_ctx = n_ctx
        h = c_void_p()
        _check(lib.strata_session_new(model.handle, byref(opts), byref(h)))
        self._h = h
        self._n_vocab = model.info.n_vocab


    @property
    def position(self) -> int:
        n = c_size_t()
        _check(lib.strata_session_position(self.handle, byref(n)))
        return n.value

    @property
    def n_ctx(self) -> int:
        n = c_size_t()
        _check(lib.strata_session_n_ctx(self.handle, byref(n)))
        return n.value

    @property
    def tokens(self) -> List[int]:
        buf, n = _query(
            lambda b, c, o: lib.strata_session_tokens(self.handle, b, c, o),
            lambda k: (c_uint32 * max(k, 1))(),
            self.position + 1,
        )
        return list(buf[:n])

    def reset(self) -> None:
        _check(lib.strata_session_reset(self.handle))

    def truncate(self, position: int) -> None:
        _check(lib.strata_session_truncate(self.handle, position))

    def feed(self, tokens: Sequence[int]) -> None:
        """Evaluate tokens; their last logits are then available."""
        arr = _u32_array(tokens)
        _check(lib.strata_session_feed(self.handle, arr, len(tokens)))

    def logits(self) -> List[float]:
        buf = (c_float * self._n_vocab)()
        n = c_size_t()
        _check(lib.strata_session_logits(self.handle, buf, self._n_vocab, byref(n)))
        return list(buf[: n.value])

    def _options(self, max_tokens, sampler, stop, add_special, parse_special, callback, lookup=0,
                 draft=None, draft_max=0):  # fmt: skip
        o = _lib.new(_lib.GenerateOptions)
        _check(lib.strata_generate_options_default(byref(o)))
        o.max_tokens = max_tokens
        o.lookup_max_draft = lookup
        if draft is not None:
            o.draft_model = draft.handle
            o.draft_model_max = draft_max
        keep = []
        if sampler is not None:
            p = sampler._to_c()
            keep.append(p)
            o.sampler = ctypes.pointer(p)
        if stop:
            enc = [s.encode() for s in stop]
            arr = (_lib.Str * len(enc))(*[_lib.Str(e, len(e)) for e in enc])
            keep += [enc, arr]
            o.stop = arr
            o.n_stop = len(enc)
        o.flags = (_lib.TOKENIZE_ADD_SPECIAL if add_special else 0) | (
            _lib.TOKENIZE_PARSE_SPECIAL if parse_special else 0
        )
        if callback is not None:
            o.on_token = callback.c
        return o, keep

    def generate_with(
        self,
        prompt: str,
        on_token: Callable[[int, str], bool],
        *,
        max_tokens: int = 128,
        sampler: Optional[SamplerParams] = None,
        stop: Sequence[str] = (),
        add_special: bool = True,
        parse_special: bool = True,
        lookup: int = 0,
        draft: Optional["Model"] = None,
        draft_max: int = 0,
    ) -> Completion:
        """Generate, calling on_token(id, text) for each token (return False
        to stop); returns the summary. Speculative decoding (bit-identical
        to plain decoding on a model loaded with batch_invariant=True):
        lookup=N drafts up to N tokens per pass by prompt lookup; draft=MODEL
        (same vocabulary) drafts up to draft_max (default 8) greedily."""
        cb = _TokenCallback(on_token)
        o, keep = self._options(max_tokens, sampler, stop, add_special, parse_special, cb, lookup,
                                draft, draft_max)  # fmt: skip
        keep.append(draft)
        c = _lib.new(_lib.Completion)
        p = prompt.encode()
        st = lib.strata_generate(self.handle, p, len(p), byref(o), byref(c))
        del keep
        if cb.error is not None:
            raise cb.error
        _check(st)
        return Completion(
            STOP_REASONS.get(c.stop_reason, "?"),
            c.n_prompt_tokens,
            c.n_tokens,
            c.prompt_ms,
            c.generation_ms,
            c.n_drafted,
            c.n_accepted,
        )

    def generate(self, prompt: str, **kw) -> Iterator[Tuple[int, str]]:
        """Iterate over (token id, text) as they are generated. Leaving the
        loop early stops generation. The keyword arguments are those of
        generate_with. The library runs on a helper thread that hands over
        one token at a time; the iterator's .completion is set at the end."""
        return _GenerateIter(self, prompt, kw)

    def text(self, prompt: str, **kw) -> str:
        """The whole generated text."""
        parts = []
        self.generate_with(prompt, lambda _i, t: parts.append(t) is None, **kw)
        return "".join(parts)


class _GenerateIter:
    _DONE = object()

    def __init__(self, session: Session, prompt: str, kw):
        self.completion: Optional[Completion] = None
        self._q: "queue.Queue" = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(0)
        self._stop = False
        self._finished = False

        def on_token(i, t):
            self._q.put((i, t))
            self._go.acquire()  # wait until the consumer asks for the next one
            return not self._stop

        def run():
            try:
                self.completion = session.generate_with(prompt, on_token, **kw)
                self._q.put(self._DONE)
            except BaseException as e:
                self._q.put(e)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> Tuple[int, str]:
        if self._finished:
            raise StopIteration
        item = self._q.get()
        if item is self._DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            self._thread.join()
            raise item
        self._go.release()
        return item

    def close(self) -> None:
        """Stop generating (called when a for loop is left early, too)."""
        if self._finished:
            return
        self._stop = True
        while True:
            self._go.release()
            item = self._q.get()
            if item is self._DONE or isinstance(item, BaseException):
                break
        self._finished = True
        self._thread.join()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


@dataclass
class TokenEvent:
    """A generated token of a scheduler request: its id, the text it
    completes, and with logprobs its log-probability and the most likely
    alternatives [(id, logprob)], best first."""

    token: int
    text: str
    logprob: Optional[float] = None
    top: Optional[List[Tuple[int, float]]] = None


@dataclass
class RequestEnd:
    """The last event of a scheduler request. `text` is what no token event
    carried (held back until the end): the tokens' texts followed by it make
    the whole text."""

    finish_reason: str
    text: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float
    total_ms: float


class Scheduler(_Owned):
    """Many requests at once on one model (continuous batching on a thread
    of the library's). Thread-safe: submit from any thread, iterate
    different requests from different threads (the C poll releases the
    GIL). The options left 0 take the library's defaults. close() (or
    `with`) cancels what still runs."""

    _KIND = "scheduler"
    _FREE = "strata_scheduler_free"

    def __init__(
        self,
        model: Model,
        *,
        slots: int = 0,
        n_ctx: int = 0,
        max_queue: int = 0,
        max_batch_tokens: int = 0,
        prefill_chunk: int = 0,
        kv_budget_bytes: int = 0,
    ):
        self._h = None
        self.model = model
        o = _lib.new(_lib.SchedulerOptions)
        _check(lib.strata_scheduler_options_default(byref(o)))
        o.slots, o.n_ctx, o.max_queue = slots, n_ctx, max_queue
        o.max_batch_tokens, o.prefill_chunk, o.kv_budget_bytes = max_batch_tokens, prefill_chunk, kv_budget_bytes
        h = c_void_p()
        _check(lib.strata_scheduler_new(model.handle, byref(o), byref(h)))
        self._h = h


    @property
    def options(self) -> dict:
        """The options in force (defaults filled in)."""
        o = _lib.new(_lib.SchedulerOptions)
        _check(lib.strata_scheduler_get_options(self.handle, byref(o)))
        return {f: getattr(o, f) for f, _ in _lib.SchedulerOptions._fields_ if f != "struct_size"}

    def stats(self) -> dict:
        s = _lib.new(_lib.SchedulerStats)
        _check(lib.strata_scheduler_get_stats(self.handle, byref(s)))
        return {f: getattr(s, f) for f, _ in _lib.SchedulerStats._fields_ if f != "struct_size"}

    def submit(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int = 128,
        sampler: Optional[SamplerParams] = None,
        stop: Sequence[str] = (),
        logprobs: bool = False,
        top_logprobs: int = 0,
        ignore_eos: bool = False,
    ) -> "Request":
        """Submit token ids; Error STRATA_QUEUE_FULL (retry later),
        STRATA_CONTEXT_FULL, STRATA_KV_BUDGET, ... when refused."""
        p = _lib.new(_lib.RequestParams)
        _check(lib.strata_request_params_default(byref(p)))
        p.max_tokens = max_tokens
        keep = []
        if sampler is not None:
            sp = sampler._to_c()
            keep.append(sp)
            p.sampler = ctypes.pointer(sp)
        if stop:
            enc = [x.encode() for x in stop]
            arr = (_lib.Str * len(enc))(*[_lib.Str(e, len(e)) for e in enc])
            keep += [enc, arr]
            p.stop = arr
            p.n_stop = len(enc)
        p.logprobs, p.top_logprobs, p.ignore_eos = int(logprobs), top_logprobs, int(ignore_eos)
        arr = _u32_array(prompt)
        rid = c_uint64()
        _check(lib.strata_scheduler_submit(self.handle, arr, len(prompt), byref(p), byref(rid)))
        del keep
        return Request(self, rid.value)

    def poll(self, request_id: int, timeout_ms: int = 1000):
        """The request's next event (TokenEvent or RequestEnd), or None when
        none came within timeout_ms."""
        ev = _lib.new(_lib.RequestEvent)
        n = c_size_t(0)
        cap = 256
        while True:
            buf = ctypes.create_string_buffer(cap)
            st = lib.strata_scheduler_poll(self.handle, request_id, timeout_ms, byref(ev), buf, cap, byref(n))
            if st != _lib.BUFFER_TOO_SMALL:
                break
            cap = n.value + 1  # the event was kept: ask again with room for it
        if st == _lib.TIMEOUT:
            return None
        _check(st)
        text = buf.raw[: n.value].decode("utf-8")
        if ev.kind == _lib.EVENT_DONE:
            return RequestEnd(
                FINISH_REASONS.get(ev.finish_reason, "?"),
                text,
                ev.prompt_tokens,
                ev.cached_tokens,
                ev.completion_tokens,
                ev.time_to_first_token_ms,
                ev.total_ms,
            )
        if ev.has_logprob:
            top = [(ev.top_tokens[k], ev.top_logprobs[k]) for k in range(ev.n_top)]
            return TokenEvent(ev.token, text, ev.logprob, top)
        return TokenEvent(ev.token, text)

    def cancel(self, request_id: int) -> None:
        _check(lib.strata_scheduler_cancel(self.handle, request_id))


class Request:
    """A submitted request. Iterating gives its TokenEvents; at the end
    `.end` holds the RequestEnd (and the request is forgotten by the
    scheduler)."""

    def __init__(self, scheduler: Scheduler, request_id: int):
        self.scheduler = scheduler
        self.id = request_id
        self.end: Optional[RequestEnd] = None

    def __iter__(self) -> Iterator[TokenEvent]:
        while self.end is None:
            ev = self.scheduler.poll(self.id, 1000)
            if ev is None:
                continue
            if isinstance(ev, RequestEnd):
                self.end = ev
                return
            yield ev

    def cancel(self) -> None:
        self.scheduler.cancel(self.id)

    def wait(self) -> Tuple[List[int], str, RequestEnd]:
        """Run to the end: the tokens, the whole text and the last event."""
        tokens, texts = [], []
        for ev in self:
            tokens.append(ev.token)
            texts.append(ev.text)
        assert self.end is not None
        return tokens, "".join(texts) + self.end.text, self.end


class Sampler:
    """A seeded sampler for one sequence."""

    def __init__(self, params: Optional[SamplerParams] = None):
        self._h = None
        p = (params or SamplerParams.default())._to_c()
        h = c_void_p()
        _check(lib.strata_sampler_new(byref(p), byref(h)))
        self._h = h

    def close(self) -> None:
        if self._h:
            lib.strata_sampler_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def sample(self, logits: Sequence[float]) -> int:
        arr = (c_float * max(len(logits), 1))(*logits)
        out = c_uint32()
        _check(lib.strata_sampler_sample(self._h, arr, len(logits), byref(out)))
        return out.value

    def sample_session(self, session: Session) -> int:
        out = c_uint32()
        _check(lib.strata_sampler_sample_session(self._h, session.handle, byref(out)))
        return out.value

    def accept(self, token: int) -> None:
        _check(lib.strata_sampler_accept(self._h, token))

    def reset(self) -> None:
        _check(lib.strata_sampler_reset(self._h))


class Shard(_Owned):
    """A shard node over a model or layer range: frames in, frames out.
    Thread-safe."""

    _KIND = "shard"
    _FREE = "strata_shard_free"

    def __init__(self, model: Model, max_sessions: int = 64, n_ctx: int = 4096, output_dtype: int = DTYPE_F32):
        self._h = None
        lim = _lib.new(_lib.ShardLimits)
        lim.max_sessions, lim.n_ctx, lim.output_dtype = max_sessions, n_ctx, output_dtype
        h = c_void_p()
        _check(lib.strata_shard_new(model.handle, byref(lim), byref(h)))
        self._h = h


    @property
    def digest(self) -> bytes:
        d = (c_uint8 * 32)()
        _check(lib.strata_shard_digest(self._h, d, 32))
        return bytes(d)

    def forward(self, frame: bytes) -> bytes:
        src = _u8_array(frame)
        n = c_size_t()
        _check(lib.strata_shard_output_len(self._h, src, len(frame), byref(n)))
        out = (c_uint8 * n.value)()
        _check(lib.strata_shard_forward(self._h, src, len(frame), out, n.value, byref(n)))
        return bytes(out[: n.value])

    def position(self, session: int) -> int:
        p = c_uint64()
        _check(lib.strata_shard_position(self._h, session, byref(p)))
        return p.value

    def truncate(self, session: int, position: int) -> None:
        _check(lib.strata_shard_truncate(self._h, session, position))

    def close_session(self, session: int) -> None:
        _check(lib.strata_shard_close(self._h, session))

    @property
    def n_sessions(self) -> int:
        n = c_size_t()
        _check(lib.strata_shard_n_sessions(self._h, byref(n)))
        return n.value


def encode_tokens_frame(model_digest: bytes, session: int, position: int, tokens: Sequence[int]) -> bytes:
    d = _u8_array(model_digest)
    arr = _u32_array(tokens)
    return _bytes_out(
        lambda b, c, o: lib.strata_frame_encode_tokens(d, len(model_digest), session, position, arr, len(tokens), b, c, o),
        _lib.FRAME_HEADER_LEN + 4 * len(tokens) + _lib.FRAME_CHECKSUM_LEN,
    )


def encode_floats_frame(info: FrameInfo, values: Sequence[float]) -> bytes:
    h = _lib.new(_lib.FrameInfo)
    h.kind, h.dtype, h.boundary = info.kind, info.dtype, info.boundary
    h.model = (c_uint8 * 32)(*info.model)
    h.session, h.position, h.width = info.session, info.position, info.width
    arr = (c_float * max(len(values), 1))(*values)
    return _bytes_out(
        lambda b, c, o: lib.strata_frame_encode_floats(byref(h), arr, len(values), b, c, o),
        _lib.FRAME_HEADER_LEN + 4 * len(values) + _lib.FRAME_CHECKSUM_LEN,
    )


def decode_frame(frame: bytes) -> FrameInfo:
    src = _u8_array(frame)
    i = _lib.new(_lib.FrameInfo)
    _check(lib.strata_frame_decode(src, len(frame), byref(i)))
    return FrameInfo(i.kind, i.dtype, i.boundary, bytes(i.model), i.session, i.position, i.n_tokens, i.width, i.payload_len)


def frame_tokens(frame: bytes) -> List[int]:
    src = _u8_array(frame)
    buf, n = _query(
        lambda b, c, o: lib.strata_frame_tokens(src, len(frame), b, c, o), lambda k: (c_uint32 * max(k, 1))(), 16
    )
    return list(buf[:n])


def frame_values(frame: bytes) -> List[float]:
    src = _u8_array(frame)
    buf, n = _query(
        lambda b, c, o: lib.strata_frame_values(src, len(frame), b, c, o),
        lambda k: (c_float * max(k, 1))(),
        max(len(frame) // 2, 1),
    )
    return list(buf[:n])


def frame_digest(frame: bytes) -> bytes:
    src = _u8_array(frame)
    d = (c_uint8 * 32)()
    _check(lib.strata_frame_payload_digest(src, len(frame), d, 32))
    return bytes(d)


def split(model_path: str, ranges: Sequence[Tuple[int, int]], out_dir: str) -> List[str]:
    """Write one shard file per (start, end) layer range; returns their paths."""
    arr = (_lib.LayerRange * max(len(ranges), 1))(*[_lib.LayerRange(a, b) for a, b in ranges])
    text = _text_out(
        lambda b, c, o: lib.strata_split(str(model_path).encode(), arr, len(ranges), str(out_dir).encode(), b, c, o),
        4096,
    )
    return [p for p in text.split("\n") if p]


_log_keep = None


def set_log_callback(fn: Optional[Callable[[int, str], None]], level: int = LOG_INFO) -> None:
    """Receive the library's log messages as fn(level, message), from any
    thread; None removes the callback."""
    global _log_keep
    if fn is None:
        _check(lib.strata_set_log_callback(_lib.log_fn(), None, 0))
        _log_keep = None
        return

    def trampoline(_ud, lvl, msg, n):
        try:
            fn(lvl, ctypes.string_at(msg, n).decode("utf-8", "replace"))
        except BaseException:
            pass

    cb = _lib.log_fn(trampoline)
    _check(lib.strata_set_log_callback(cb, None, level))
    _log_keep = cb
