// Package strata is a cgo binding of the Strata C interface (include/strata.h).
//
// Handles (Model, Session, Sampler, Shard) own C memory: call Close when done
// (a finalizer frees a forgotten one). Failures are *Error values carrying
// the C status and the library's message. A Model and a Shard may be used
// from many goroutines at once; a Session or Sampler by one at a time (a
// concurrent call gets an Error with status STRATA_BUSY).
//
// Building needs the library: `cargo build --release` at the repository root
// (the #cgo directives below point at ../../target/release and
// ../../include; set CGO_CFLAGS / CGO_LDFLAGS to use an installed copy).
package strata

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -lstrata -Wl,-rpath,${SRCDIR}/../../target/release
#include <stdlib.h>
#include "strata.h"

bool goStrataToken(void *, uint32_t, char *, size_t);
bool goStrataProgress(void *, uint32_t, float);

static void strata_go_on_token(strata_generate_options *o, uintptr_t handle) {
	o->on_token = (strata_token_fn)goStrataToken;
	o->user_data = (void *)handle;
}

static void strata_go_on_progress(strata_load_options *o, uintptr_t handle) {
	o->progress = (strata_progress_fn)goStrataProgress;
	o->progress_user_data = (void *)handle;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Status is a strata_status value.
type Status int

// The statuses a test or caller most often checks (see strata.h for all).
const (
	OK                   Status = C.STRATA_OK
	InvalidArgument      Status = C.STRATA_INVALID_ARGUMENT
	NullPointer          Status = C.STRATA_NULL_POINTER
	InvalidUTF8          Status = C.STRATA_INVALID_UTF8
	BufferTooSmall       Status = C.STRATA_BUFFER_TOO_SMALL
	Busy                 Status = C.STRATA_BUSY
	Cancelled            Status = C.STRATA_CANCELLED
	InvalidState         Status = C.STRATA_INVALID_STATE
	IO                   Status = C.STRATA_IO
	MalformedModel       Status = C.STRATA_MALFORMED_MODEL
	NotFound             Status = C.STRATA_NOT_FOUND
	TokenOutOfRange      Status = C.STRATA_TOKEN_OUT_OF_RANGE
	ContextFull          Status = C.STRATA_CONTEXT_FULL
	EmptyInput           Status = C.STRATA_EMPTY_INPUT
	FrameMalformed       Status = C.STRATA_FRAME_MALFORMED
	FrameChecksum        Status = C.STRATA_FRAME_CHECKSUM
	FrameWrongModel      Status = C.STRATA_FRAME_WRONG_MODEL
	TooManySessions      Status = C.STRATA_TOO_MANY_SESSIONS
	StopEOG                     = C.STRATA_STOP_EOG
	StopMaxTokens               = C.STRATA_STOP_MAX_TOKENS
	StopCallback                = C.STRATA_STOP_CALLBACK
	TokenizeAddSpecial          = C.STRATA_TOKENIZE_ADD_SPECIAL
	TokenizeParseSpecial        = C.STRATA_TOKENIZE_PARSE_SPECIAL
)

func (s Status) String() string { return C.GoString(C.strata_status_name(C.int32_t(s))) }

// Error is a failed call: its status and the library's message.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%v: %s", e.Status, e.Message) }

// lastError must run on the thread that made the failed call: callers lock
// the goroutine to its thread around the call (see call).
func lastError(st uint32) error {
	if st == C.STRATA_OK {
		return nil
	}
	n := C.strata_last_error_length()
	buf := make([]byte, int(n)+1)
	var w C.size_t
	C.strata_last_error((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &w)
	return &Error{Status: Status(st), Message: string(buf[:w])}
}

// call runs a C call and reads the thread-local last error on the same OS
// thread.
func call(f func() uint32) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return lastError(f())
}

// Version is the library's version string.
func Version() string { return C.GoString(C.strata_version()) }

// ABIVersion is the loaded library's ABI version; it must equal ABIHeader.
func ABIVersion() uint32 { return uint32(C.strata_abi_version()) }

// ABIHeader is the ABI version of the header this package was built with.
const ABIHeader = C.STRATA_ABI_VERSION

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

func u32Ptr(v []uint32) *C.uint32_t {
	if len(v) == 0 {
		return nil
	}
	return (*C.uint32_t)(unsafe.Pointer(&v[0]))
}

func charPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// textOut runs a copy-out call that returns NUL-terminated text.
func textOut(f func(buf *C.char, n C.size_t, out *C.size_t) uint32) (string, error) {
	var s string
	err := call(func() uint32 {
		buf := make([]byte, 256)
		var n C.size_t
		st := f(charPtr(buf), C.size_t(len(buf)), &n)
		if st == C.STRATA_BUFFER_TOO_SMALL {
			buf = make([]byte, int(n)+1)
			st = f(charPtr(buf), C.size_t(len(buf)), &n)
		}
		if st == C.STRATA_OK {
			s = string(buf[:n])
		}
		return st
	})
	return s, err
}

// LoadOptions says how to load a model; the zero value loads everything.
type LoadOptions struct {
	Threads    uint32
	LayerStart uint32
	LayerEnd   uint32 // 0: all layers
	// Progress is called at each load stage; false cancels (Cancelled).
	Progress func(stage uint32, fraction float32) bool
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	NLayer, LayerStart, LayerEnd, NEmbd, NVocab, NCtxTrain uint32
	TakesTokens, GivesLogits, ShardFile                    bool
}

// Model is a loaded model or layer range.
type Model struct{ h *C.strata_model }

// Load loads a GGUF model.
func Load(path string, opts *LoadOptions) (*Model, error) {
	o := C.strata_load_options{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_load_options{}))}
	C.strata_load_options_default(&o)
	var pc *progressCall
	if opts != nil {
		o.n_threads = C.uint32_t(opts.Threads)
		o.layer_start = C.uint32_t(opts.LayerStart)
		o.layer_end = C.uint32_t(opts.LayerEnd)
		if opts.Progress != nil {
			pc = &progressCall{fn: opts.Progress}
			h := cgo.NewHandle(pc)
			defer h.Delete()
			C.strata_go_on_progress(&o, C.uintptr_t(h))
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var m *C.strata_model
	err := call(func() uint32 { return C.strata_model_load(cpath, &o, &m) })
	if pc != nil && pc.panic != nil {
		panic(pc.panic)
	}
	if err != nil {
		return nil, err
	}
	model := &Model{h: m}
	runtime.SetFinalizer(model, (*Model).Close)
	return model, nil
}

// Close frees the model (sessions and shards made from it stay valid).
func (m *Model) Close() {
	if m.h != nil {
		C.strata_model_free(m.h)
		m.h = nil
	}
}

// Info describes the model.
func (m *Model) Info() (ModelInfo, error) {
	i := C.strata_model_info{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_model_info{}))}
	err := call(func() uint32 { return C.strata_model_get_info(m.h, &i) })
	return ModelInfo{
		NLayer: uint32(i.n_layer), LayerStart: uint32(i.layer_start), LayerEnd: uint32(i.layer_end),
		NEmbd: uint32(i.n_embd), NVocab: uint32(i.n_vocab), NCtxTrain: uint32(i.n_ctx_train),
		TakesTokens: i.flags&C.STRATA_MODEL_TAKES_TOKENS != 0,
		GivesLogits: i.flags&C.STRATA_MODEL_GIVES_LOGITS != 0,
		ShardFile:   i.flags&C.STRATA_MODEL_SHARD_FILE != 0,
	}, err
}

// Meta is a metadata value rendered as text.
func (m *Model) Meta(key string) (string, error) {
	k := []byte(key)
	return textOut(func(b *C.char, n C.size_t, o *C.size_t) uint32 {
		return C.strata_model_meta(m.h, charPtr(k), C.size_t(len(k)), b, n, o)
	})
}

// Digest is the model's identity digest.
func (m *Model) Digest() ([32]byte, error) {
	var d [32]byte
	err := call(func() uint32 { return C.strata_model_digest(m.h, (*C.uint8_t)(&d[0]), 32) })
	return d, err
}

// Tokenize turns text into token ids (flags: TokenizeAddSpecial|TokenizeParseSpecial).
func (m *Model) Tokenize(text string, flags uint32) ([]uint32, error) {
	t := []byte(text)
	var ids []uint32
	err := call(func() uint32 {
		ids = make([]uint32, len(t)+8)
		var n C.size_t
		st := C.strata_tokenize(m.h, charPtr(t), C.size_t(len(t)), C.uint32_t(flags), u32Ptr(ids), C.size_t(len(ids)), &n)
		if st == C.STRATA_BUFFER_TOO_SMALL {
			ids = make([]uint32, int(n))
			st = C.strata_tokenize(m.h, charPtr(t), C.size_t(len(t)), C.uint32_t(flags), u32Ptr(ids), C.size_t(len(ids)), &n)
		}
		if st == C.STRATA_OK {
			ids = ids[:n]
		}
		return st
	})
	return ids, err
}

// Detokenize turns token ids into text.
func (m *Model) Detokenize(ids []uint32) (string, error) {
	return textOut(func(b *C.char, n C.size_t, o *C.size_t) uint32 {
		return C.strata_detokenize(m.h, u32Ptr(ids), C.size_t(len(ids)), 0, b, n, o)
	})
}

// Session is one conversation over a model.
type Session struct {
	h      *C.strata_session
	nVocab int
	Model  *Model
}

// NewSession opens a session; nCtx 0 means the model's default.
func NewSession(m *Model, nCtx uint32) (*Session, error) {
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	o := C.strata_session_options{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_session_options{})), n_ctx: C.uint32_t(nCtx)}
	var s *C.strata_session
	if err := call(func() uint32 { return C.strata_session_new(m.h, &o, &s) }); err != nil {
		return nil, err
	}
	sess := &Session{h: s, nVocab: int(info.NVocab), Model: m}
	runtime.SetFinalizer(sess, (*Session).Close)
	return sess, nil
}

// Close frees the session.
func (s *Session) Close() {
	if s.h != nil {
		C.strata_session_free(s.h)
		s.h = nil
	}
}

// Position is the number of positions the session holds.
func (s *Session) Position() (int, error) {
	var n C.size_t
	err := call(func() uint32 { return C.strata_session_position(s.h, &n) })
	return int(n), err
}

// Reset forgets everything.
func (s *Session) Reset() error {
	return call(func() uint32 { return C.strata_session_reset(s.h) })
}

// Feed evaluates tokens after what the session holds.
func (s *Session) Feed(ids []uint32) error {
	return call(func() uint32 { return C.strata_session_feed(s.h, u32Ptr(ids), C.size_t(len(ids))) })
}

// Logits returns a copy of the last token's logits.
func (s *Session) Logits() ([]float32, error) {
	out := make([]float32, s.nVocab)
	var n C.size_t
	err := call(func() uint32 {
		return C.strata_session_logits(s.h, (*C.float)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &n)
	})
	return out[:n], err
}

// SamplerParams are sampling parameters (see strata_sampler_params).
type SamplerParams struct {
	Temperature, TopP, MinP, RepeatPenalty, FrequencyPenalty, PresencePenalty float32
	TopK, RepeatLastN                                                         uint32
	Seed                                                                      uint64
}

func samplerFromC(p *C.strata_sampler_params) SamplerParams {
	return SamplerParams{
		Temperature: float32(p.temperature), TopP: float32(p.top_p), MinP: float32(p.min_p),
		RepeatPenalty: float32(p.repeat_penalty), FrequencyPenalty: float32(p.frequency_penalty),
		PresencePenalty: float32(p.presence_penalty), TopK: uint32(p.top_k),
		RepeatLastN: uint32(p.repeat_last_n), Seed: uint64(p.seed),
	}
}

func (s SamplerParams) toC(p *C.strata_sampler_params) {
	p.struct_size = C.uint32_t(unsafe.Sizeof(C.strata_sampler_params{}))
	p.temperature, p.top_p, p.min_p = C.float(s.Temperature), C.float(s.TopP), C.float(s.MinP)
	p.repeat_penalty, p.frequency_penalty = C.float(s.RepeatPenalty), C.float(s.FrequencyPenalty)
	p.presence_penalty, p.top_k, p.repeat_last_n = C.float(s.PresencePenalty), C.uint32_t(s.TopK), C.uint32_t(s.RepeatLastN)
	p.seed = C.uint64_t(s.Seed)
}

// DefaultSamplerParams are the library's defaults.
func DefaultSamplerParams() SamplerParams {
	p := C.strata_sampler_params{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_sampler_params{}))}
	C.strata_sampler_params_default(&p)
	return samplerFromC(&p)
}

// GreedySamplerParams pick the argmax.
func GreedySamplerParams() SamplerParams {
	p := C.strata_sampler_params{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_sampler_params{}))}
	C.strata_sampler_params_greedy(&p)
	return samplerFromC(&p)
}

// GenerateOptions say what to generate.
type GenerateOptions struct {
	MaxTokens uint32
	Sampler   *SamplerParams // nil: the defaults
	NoSpecial bool           // do not add BOS/EOS nor parse special tokens in the prompt
}

// Completion summarises a generation.
type Completion struct {
	StopReason   uint32
	PromptTokens uint64
	Tokens       uint64
}

// Generate runs the prompt and calls fn for each token (false stops).
func (s *Session) Generate(prompt string, opts GenerateOptions, fn func(id uint32, text string) bool) (Completion, error) {
	o := C.strata_generate_options{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_generate_options{}))}
	C.strata_generate_options_default(&o)
	o.max_tokens = C.uint32_t(opts.MaxTokens)
	if opts.NoSpecial {
		o.flags = 0
	}
	// The sampler parameters are copied to C memory: a C struct passed by
	// pointer must not hold Go pointers.
	if opts.Sampler != nil {
		p := (*C.strata_sampler_params)(C.malloc(C.size_t(unsafe.Sizeof(C.strata_sampler_params{}))))
		defer C.free(unsafe.Pointer(p))
		opts.Sampler.toC(p)
		o.sampler = p
	}
	tc := &tokenCall{fn: fn}
	h := cgo.NewHandle(tc)
	defer h.Delete()
	C.strata_go_on_token(&o, C.uintptr_t(h))
	pr := []byte(prompt)
	c := C.strata_completion{struct_size: C.uint32_t(unsafe.Sizeof(C.strata_completion{}))}
	err := call(func() uint32 {
		return C.strata_generate(s.h, charPtr(pr), C.size_t(len(pr)), &o, &c)
	})
	if tc.panic != nil {
		panic(tc.panic)
	}
	return Completion{StopReason: uint32(c.stop_reason), PromptTokens: uint64(c.n_prompt_tokens), Tokens: uint64(c.n_tokens)}, err
}

// Shard is a shard node: frames in, frames out; safe for concurrent use.
type Shard struct{ h *C.strata_shard }

// NewShard serves a model or layer range.
func NewShard(m *Model) (*Shard, error) {
	var s *C.strata_shard
	if err := call(func() uint32 { return C.strata_shard_new(m.h, nil, &s) }); err != nil {
		return nil, err
	}
	sh := &Shard{h: s}
	runtime.SetFinalizer(sh, (*Shard).Close)
	return sh, nil
}

// Close frees the shard and its sessions.
func (s *Shard) Close() {
	if s.h != nil {
		C.strata_shard_free(s.h)
		s.h = nil
	}
}

// Digest is the model digest input frames must carry.
func (s *Shard) Digest() ([32]byte, error) {
	var d [32]byte
	err := call(func() uint32 { return C.strata_shard_digest(s.h, (*C.uint8_t)(&d[0]), 32) })
	return d, err
}

// Forward runs one frame and returns the output frame.
func (s *Shard) Forward(frame []byte) ([]byte, error) {
	var out []byte
	err := call(func() uint32 {
		var n C.size_t
		if st := C.strata_shard_output_len(s.h, bytesPtr(frame), C.size_t(len(frame)), &n); st != C.STRATA_OK {
			return st
		}
		out = make([]byte, int(n))
		st := C.strata_shard_forward(s.h, bytesPtr(frame), C.size_t(len(frame)), bytesPtr(out), n, &n)
		out = out[:n]
		return st
	})
	return out, err
}

// EncodeTokens encodes a tokens frame for the first shard.
func EncodeTokens(model [32]byte, session, position uint64, ids []uint32) ([]byte, error) {
	out := make([]byte, C.STRATA_FRAME_HEADER_LEN+4*len(ids)+C.STRATA_FRAME_CHECKSUM_LEN)
	var n C.size_t
	err := call(func() uint32 {
		return C.strata_frame_encode_tokens((*C.uint8_t)(&model[0]), 32, C.uint64_t(session), C.uint64_t(position),
			u32Ptr(ids), C.size_t(len(ids)), bytesPtr(out), C.size_t(len(out)), &n)
	})
	return out[:n], err
}

// FrameValues decodes a float frame's values.
func FrameValues(frame []byte) ([]float32, error) {
	out := make([]float32, len(frame)/2+1)
	var n C.size_t
	err := call(func() uint32 {
		return C.strata_frame_values(bytesPtr(frame), C.size_t(len(frame)), (*C.float)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &n)
	})
	return out[:n], err
}

// FrameDigest is the output digest of a frame (BLAKE3 of its payload).
func FrameDigest(frame []byte) ([32]byte, error) {
	var d [32]byte
	err := call(func() uint32 {
		return C.strata_frame_payload_digest(bytesPtr(frame), C.size_t(len(frame)), (*C.uint8_t)(&d[0]), 32)
	})
	return d, err
}
