/*
 * test_misuse.c: the C interface under misuse. Every case calls the library
 * the wrong way (NULL pointers, zero lengths, invalid UTF-8, wrong
 * struct_size, out-of-range ids, a full context, frames for the wrong model,
 * truncated or corrupt frames, callbacks that cancel or stop, re-entry, an
 * unknown numerics value, a scheduler's full queue, unknown request ids and
 * timeouts) and checks the exact status, that out-parameters
 * were left alone, and that the process carries on. Run under valgrind by bindings/test-all.sh.
 *
 *   test_misuse MODEL OTHER_MODEL WORK_DIR
 *
 * MODEL and OTHER_MODEL: two small synthetic models of the same shape with
 * different weights (`strata synth --seed 1` / `--seed 2`), at least 2
 * layers. WORK_DIR: an empty directory for scratch files.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"

static int n_cases, n_failed;

static void check_status(int line, const char *expr, strata_status got, strata_status want) {
    n_cases++;
    if (got != want) {
        char msg[512];
        strata_last_error(msg, sizeof msg, NULL);
        fprintf(stderr, "FAIL line %d: %s\n  got %s, want %s (last error: %s)\n", line, expr,
                strata_status_name(got), strata_status_name(want), msg);
        n_failed++;
    }
}

static void check_true(int line, const char *expr, int ok) {
    n_cases++;
    if (!ok) {
        fprintf(stderr, "FAIL line %d: %s\n", line, expr);
        n_failed++;
    }
}

/* One case: a call and the status it must return. */
#define CASE(call, want) check_status(__LINE__, #call, (call), (want))
/* A condition that must hold (counted as a case too). */
#define EXPECT(cond) check_true(__LINE__, #cond, (cond))
/* Setup that must succeed; abort the run if it does not. */
#define MUST(call)                                                                                 \
    do {                                                                                           \
        strata_status st_ = (call);                                                                \
        if (st_ != STRATA_OK) {                                                                    \
            char m_[512];                                                                          \
            strata_last_error(m_, sizeof m_, NULL);                                                \
            fprintf(stderr, "setup failed line %d: %s: %s: %s\n", __LINE__, #call,                 \
                    strata_status_name(st_), m_);                                                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define SENTINEL ((void *)0x5a5a)

/* ---- callbacks ---------------------------------------------------------- */

struct progress_log {
    int stages[8];
    int n;
    strata_load_stage cancel_at;
};

static bool on_progress(void *ud, strata_load_stage stage, float progress) {
    struct progress_log *p = ud;
    (void)progress;
    if (p->n < 8) p->stages[p->n++] = (int)stage;
    return stage != p->cancel_at;
}

struct stopper {
    int seen;
    int stop_after;
    strata_session *session; /* re-entered from the callback */
    strata_status reentry;
};

static bool on_token_stop(void *ud, uint32_t token, const char *text, size_t text_len) {
    struct stopper *s = ud;
    (void)token;
    (void)text;
    (void)text_len;
    s->seen++;
    if (s->session) {
        uint32_t t = 1;
        s->reentry = strata_session_feed(s->session, &t, 1);
    }
    return s->seen < s->stop_after;
}

struct log_sink {
    int messages;
    int loaded;
    strata_status reentry;
};

static void on_log(void *ud, strata_log_level level, const char *msg, size_t len) {
    struct log_sink *l = ud;
    (void)level;
    l->messages++;
    if (len != strlen(msg)) l->loaded = -1000;
    if (strstr(msg, "loaded ")) l->loaded++;
    l->reentry = strata_set_log_callback(NULL, NULL, 0);
}

/* ---- helpers -------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static size_t read_prefix(const char *path, void *buf, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, len, f);
    fclose(f);
    return n;
}

static strata_model *load(const char *path, uint32_t start, uint32_t end) {
    strata_load_options o = {.struct_size = sizeof o};
    MUST(strata_load_options_default(&o));
    o.layer_start = start;
    o.layer_end = end;
    o.n_threads = 2;
    strata_model *m = NULL;
    MUST(strata_model_load(path, &o, &m));
    return m;
}

/* ---- the cases ---------------------------------------------------------- */

static void general(void) {
    EXPECT(strata_abi_version() == STRATA_ABI_VERSION);
    EXPECT(strcmp(strata_status_name(STRATA_CONTEXT_FULL), "STRATA_CONTEXT_FULL") == 0);
    EXPECT(strcmp(strata_status_name(-7), "STRATA_UNKNOWN_STATUS") == 0);
    size_t w = 99;
    CASE(strata_last_error(NULL, 10, &w), STRATA_NULL_POINTER);
    EXPECT(w == 99);
    /* The failure above must not have replaced the last error. */
    strata_model *m = SENTINEL;
    CASE(strata_model_load("/nonexistent/model.gguf", NULL, &m), STRATA_IO);
    char tiny[8];
    CASE(strata_last_error(tiny, sizeof tiny, &w), STRATA_BUFFER_TOO_SMALL);
    EXPECT(w == 7 && tiny[7] == '\0');
    EXPECT(strata_last_error_length() > 7);
    char full[512];
    CASE(strata_last_error(full, sizeof full, &w), STRATA_OK);
    EXPECT(strstr(full, "/nonexistent/model.gguf") != NULL && w == strlen(full));
    CASE(strata_last_error(NULL, 0, NULL), STRATA_BUFFER_TOO_SMALL);
}

static void loading(const char *path, const char *dir) {
    strata_model *m = SENTINEL;
    CASE(strata_model_load(NULL, NULL, &m), STRATA_NULL_POINTER);
    CASE(strata_model_load(path, NULL, NULL), STRATA_NULL_POINTER);
    CASE(strata_model_load("", NULL, &m), STRATA_INVALID_ARGUMENT);
    EXPECT(m == SENTINEL); /* out-parameters are written only on success */

    char garbage_path[1024], trunc_path[1024];
    snprintf(garbage_path, sizeof garbage_path, "%s/garbage.gguf", dir);
    write_file(garbage_path, "this is not a GGUF file at all", 30);
    CASE(strata_model_load(garbage_path, NULL, &m), STRATA_MALFORMED_MODEL);
    unsigned char head[4096];
    size_t n = read_prefix(path, head, sizeof head);
    snprintf(trunc_path, sizeof trunc_path, "%s/truncated.gguf", dir);
    write_file(trunc_path, head, n / 2);
    CASE(strata_model_load(trunc_path, NULL, &m), STRATA_MALFORMED_MODEL);
    EXPECT(m == SENTINEL);

    /* struct_size: too small, too large with unknown non-zero bytes, too
     * large but zero (accepted), absurd. */
    struct {
        strata_load_options o;
        uint64_t future[2];
    } big;
    memset(&big, 0, sizeof big);
    big.o.struct_size = sizeof big.o;
    MUST(strata_load_options_default(&big.o));
    big.o.struct_size = 0;
    CASE(strata_model_load(path, &big.o, &m), STRATA_STRUCT_SIZE);
    /* The first published strata_load_options ended before `numerics`:
     * smaller than that is refused, that size is accepted (and what lies
     * past it is not read). */
    big.o.struct_size = offsetof(strata_load_options, numerics) - 8;
    CASE(strata_model_load(path, &big.o, &m), STRATA_STRUCT_SIZE);
    EXPECT(m == SENTINEL);
    big.o.struct_size = offsetof(strata_load_options, numerics);
    big.o.numerics = 0xdead;
    CASE(strata_model_load(path, &big.o, &m), STRATA_OK);
    strata_model_free(m);
    m = SENTINEL;
    big.o.numerics = STRATA_NUMERICS_LLAMA_CPP;
    big.o.struct_size = sizeof big;
    big.future[1] = 1;
    CASE(strata_model_load(path, &big.o, &m), STRATA_STRUCT_SIZE);
    big.future[1] = 0;
    CASE(strata_model_load(path, &big.o, &m), STRATA_OK);
    strata_model_free(m);
    big.o.struct_size = 1u << 30;
    CASE(strata_model_load(path, &big.o, &m), STRATA_STRUCT_SIZE);

    /* Layer ranges. */
    strata_load_options o = {.struct_size = sizeof o};
    MUST(strata_load_options_default(&o));
    o.layer_start = 0;
    o.layer_end = 99;
    m = SENTINEL;
    CASE(strata_model_load(path, &o, &m), STRATA_INVALID_ARGUMENT);
    o.layer_start = 1;
    o.layer_end = 0;
    CASE(strata_model_load(path, &o, &m), STRATA_INVALID_ARGUMENT);
    o.layer_start = 1;
    o.layer_end = 1;
    CASE(strata_model_load(path, &o, &m), STRATA_INVALID_ARGUMENT);
    EXPECT(m == SENTINEL);

    /* Numerics: only the STRATA_NUMERICS_* values. */
    MUST(strata_load_options_default(&o));
    EXPECT(o.numerics == STRATA_NUMERICS_LLAMA_CPP);
    o.numerics = 2;
    CASE(strata_model_load(path, &o, &m), STRATA_INVALID_ARGUMENT);
    o.numerics = 0xffffffffu;
    CASE(strata_model_load(path, &o, &m), STRATA_INVALID_ARGUMENT);
    EXPECT(m == SENTINEL);
    char why[512];
    strata_last_error(why, sizeof why, NULL);
    EXPECT(strstr(why, "numerics") != NULL);

    /* Progress: every stage in order; cancel at the first and at the last. */
    struct progress_log p = {.cancel_at = 0};
    MUST(strata_load_options_default(&o));
    o.progress = on_progress;
    o.progress_user_data = &p;
    m = NULL;
    CASE(strata_model_load(path, &o, &m), STRATA_OK);
    EXPECT(p.n == 4 && p.stages[0] == STRATA_LOAD_OPENED &&
           p.stages[1] == STRATA_LOAD_LAYERS_BOUND && p.stages[2] == STRATA_LOAD_TOKENIZER_LOADED &&
           p.stages[3] == STRATA_LOAD_DONE);
    strata_model_free(m);
    struct progress_log c1 = {.cancel_at = STRATA_LOAD_OPENED};
    o.progress_user_data = &c1;
    m = SENTINEL;
    CASE(strata_model_load(path, &o, &m), STRATA_CANCELLED);
    EXPECT(c1.n == 1 && m == SENTINEL);
    struct progress_log c4 = {.cancel_at = STRATA_LOAD_DONE};
    o.progress_user_data = &c4;
    CASE(strata_model_load(path, &o, &m), STRATA_CANCELLED);
    EXPECT(c4.n == 4 && m == SENTINEL);
}

/* The logits (as bits) after feeding `n` tokens `chunk` at a time to a
 * new session on `m`; returns the number of logits written to `out`. */
static size_t logits_in_chunks(strata_model *m, const uint32_t *tokens, size_t n, size_t chunk,
                               float *out, size_t cap) {
    strata_session *s = NULL;
    MUST(strata_session_new(m, NULL, &s));
    for (size_t i = 0; i < n; i += chunk)
        MUST(strata_session_feed(s, tokens + i, n - i < chunk ? n - i : chunk));
    size_t len = 0;
    MUST(strata_session_logits(s, out, cap, &len));
    strata_session_free(s);
    return len;
}

/* STRATA_NUMERICS_BATCH_INVARIANT: the model says it was loaded so, and a
 * prompt fed in one call gives the same logits, bit for bit, as the same
 * tokens fed one at a time or three at a time. */
static void batch_invariant(const char *path) {
    strata_load_options o = {.struct_size = sizeof o};
    MUST(strata_load_options_default(&o));
    o.numerics = STRATA_NUMERICS_BATCH_INVARIANT;
    o.n_threads = 2;
    strata_model *m = NULL;
    CASE(strata_model_load(path, &o, &m), STRATA_OK);
    strata_model_info i = {.struct_size = sizeof i};
    MUST(strata_model_get_info(m, &i));
    EXPECT(i.numerics == STRATA_NUMERICS_BATCH_INVARIANT);
    enum { N = 20, CAP = 4096 };
    EXPECT(i.n_vocab <= CAP);
    uint32_t prompt[N];
    for (uint32_t k = 0; k < N; k++) prompt[k] = (k * 37 + 5) % i.n_vocab;
    static float whole[CAP], ones[CAP], threes[CAP];
    size_t n = logits_in_chunks(m, prompt, N, N, whole, CAP);
    EXPECT(n == i.n_vocab);
    EXPECT(logits_in_chunks(m, prompt, N, 1, ones, CAP) == n &&
           memcmp(whole, ones, n * sizeof(float)) == 0);
    EXPECT(logits_in_chunks(m, prompt, N, 3, threes, CAP) == n &&
           memcmp(whole, threes, n * sizeof(float)) == 0);
    strata_model_free(m);
}

static void info(strata_model *m) {
    strata_model_info i = {.struct_size = sizeof i};
    CASE(strata_model_get_info(NULL, &i), STRATA_NULL_POINTER);
    CASE(strata_model_get_info(m, NULL), STRATA_NULL_POINTER);
    i.struct_size = 4;
    CASE(strata_model_get_info(m, &i), STRATA_STRUCT_SIZE);
    /* A larger output struct: the unknown tail is zeroed. */
    struct {
        strata_model_info i;
        uint32_t future[4];
    } big;
    memset(&big, 0xff, sizeof big);
    big.i.struct_size = sizeof big;
    CASE(strata_model_get_info(m, &big.i), STRATA_OK);
    EXPECT(big.i.struct_size == sizeof big && big.future[0] == 0 && big.future[3] == 0 &&
           big.i.n_layer >= 2 && big.i.layer_end == big.i.n_layer &&
           (big.i.flags & STRATA_MODEL_TAKES_TOKENS) && (big.i.flags & STRATA_MODEL_GIVES_LOGITS));

    char buf[256];
    size_t len = 12345;
    CASE(strata_model_meta(m, "no.such.key", 11, buf, sizeof buf, &len), STRATA_NOT_FOUND);
    EXPECT(len == 12345);
    CASE(strata_model_meta(m, "\xff\xfe", 2, buf, sizeof buf, &len), STRATA_INVALID_UTF8);
    CASE(strata_model_meta(m, NULL, 5, buf, sizeof buf, &len), STRATA_NULL_POINTER);
    CASE(strata_model_meta(m, "general.architecture", 20, NULL, 0, &len), STRATA_BUFFER_TOO_SMALL);
    EXPECT(len == 5); /* "llama": the needed length, without the NUL */
    CASE(strata_model_meta(m, "general.architecture", 20, buf, 5, &len), STRATA_BUFFER_TOO_SMALL);
    CASE(strata_model_meta(m, "general.architecture", 20, buf, 6, &len), STRATA_OK);
    EXPECT(len == 5 && strcmp(buf, "llama") == 0);
    CASE(strata_model_meta(m, "general.architecture", 20, buf, sizeof buf, NULL), STRATA_NULL_POINTER);
    CASE(strata_model_architecture(m, buf, sizeof buf, &len), STRATA_OK);
    EXPECT(strcmp(buf, "llama") == 0);
    size_t count = 0;
    CASE(strata_model_meta_count(m, &count), STRATA_OK);
    CASE(strata_model_meta_key(m, count, buf, sizeof buf, &len), STRATA_INVALID_ARGUMENT);
    CASE(strata_model_meta_key(m, 0, buf, sizeof buf, &len), STRATA_OK);

    uint8_t d[32];
    CASE(strata_model_digest(m, d, 16), STRATA_BUFFER_TOO_SMALL);
    CASE(strata_model_digest(m, NULL, 32), STRATA_NULL_POINTER);
    CASE(strata_model_digest(m, d, sizeof d), STRATA_OK);
    char hex[65];
    CASE(strata_model_digest_hex(m, hex, 64, &len), STRATA_BUFFER_TOO_SMALL);
    EXPECT(len == 64);
    CASE(strata_model_digest_hex(m, hex, sizeof hex, &len), STRATA_OK);
    char expect[3];
    snprintf(expect, sizeof expect, "%02x", d[0]);
    EXPECT(len == 64 && strncmp(hex, expect, 2) == 0);
}

static void tokenizing(strata_model *m) {
    uint32_t ids[64];
    size_t n = 777;
    const uint32_t both = STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL;
    CASE(strata_tokenize(m, "\xc3\x28", 2, both, ids, 64, &n), STRATA_INVALID_UTF8);
    CASE(strata_tokenize(m, NULL, 3, both, ids, 64, &n), STRATA_NULL_POINTER);
    CASE(strata_tokenize(m, "abc", 3, 0x80, ids, 64, &n), STRATA_INVALID_ARGUMENT);
    CASE(strata_tokenize(m, "abc", 3, both, NULL, 64, &n), STRATA_NULL_POINTER);
    EXPECT(n == 777);
    CASE(strata_tokenize(m, NULL, 0, 0, ids, 64, &n), STRATA_OK);
    EXPECT(n == 0);
    CASE(strata_tokenize(m, "hello world", 11, 0, NULL, 0, &n), STRATA_BUFFER_TOO_SMALL);
    size_t need = n;
    EXPECT(need > 0 && need <= 64);
    CASE(strata_tokenize(m, "hello world", 11, 0, ids, need, &n), STRATA_OK);
    EXPECT(n == need);

    strata_model_info i = {.struct_size = sizeof i};
    MUST(strata_model_get_info(m, &i));
    uint8_t piece[64];
    size_t len = 0;
    CASE(strata_token_to_piece(m, i.n_vocab, 0, piece, sizeof piece, &len), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_token_to_piece(m, 0xffffffffu, 0, piece, sizeof piece, &len), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_token_to_piece(m, ids[0], 0, piece, sizeof piece, &len), STRATA_OK);
    char text[256];
    uint32_t bad[] = {ids[0], i.n_vocab + 5};
    CASE(strata_detokenize(m, bad, 2, 0, text, sizeof text, &len), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_detokenize(m, ids, n, 0, text, sizeof text, &len), STRATA_OK);
    EXPECT(strcmp(text, "hello world") == 0);
    CASE(strata_detokenize(m, NULL, 0, 0, text, sizeof text, &len), STRATA_OK);
    EXPECT(len == 0 && text[0] == '\0');
    CASE(strata_token_is_eog(m, ids[0], NULL), STRATA_NULL_POINTER);
    bool eog = true;
    CASE(strata_token_is_eog(m, i.n_vocab, &eog), STRATA_TOKEN_OUT_OF_RANGE);
    if (i.eos != STRATA_TOKEN_NONE) {
        CASE(strata_token_is_eog(m, i.eos, &eog), STRATA_OK);
        EXPECT(eog);
    }
}

static void sessions(strata_model *m, const char *path) {
    strata_session *s = SENTINEL;
    CASE(strata_session_new(NULL, NULL, &s), STRATA_NULL_POINTER);
    CASE(strata_session_new(m, NULL, NULL), STRATA_NULL_POINTER);
    strata_session_options so = {.struct_size = 2};
    CASE(strata_session_new(m, &so, &s), STRATA_STRUCT_SIZE);
    EXPECT(s == SENTINEL);
    strata_model *half = load(path, 0, 1);
    CASE(strata_session_new(half, NULL, &s), STRATA_WRONG_SHARD);
    strata_model_free(half);

    so.struct_size = sizeof so;
    so.n_ctx = 8;
    s = NULL;
    MUST(strata_session_new(m, &so, &s));
    strata_model_info i = {.struct_size = sizeof i};
    MUST(strata_model_get_info(m, &i));
    uint32_t nine[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    size_t pos = 99;
    CASE(strata_session_feed(s, nine, 0), STRATA_EMPTY_INPUT);
    CASE(strata_session_feed(s, NULL, 3), STRATA_NULL_POINTER);
    uint32_t oob[2] = {1, i.n_vocab};
    CASE(strata_session_feed(s, oob, 2), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_session_position(s, &pos), STRATA_OK);
    EXPECT(pos == 0);
    float *logits = malloc(sizeof(float) * i.n_vocab);
    size_t n_logits = 0;
    CASE(strata_session_logits(s, logits, i.n_vocab, &n_logits), STRATA_INVALID_STATE);
    /* Context overflow: 9 tokens into 8 positions; then 8 fit; then 1 more. */
    CASE(strata_session_feed(s, nine, 9), STRATA_CONTEXT_FULL);
    CASE(strata_session_position(s, &pos), STRATA_OK);
    EXPECT(pos == 0);
    CASE(strata_session_feed(s, nine, 8), STRATA_OK);
    CASE(strata_session_feed(s, nine, 1), STRATA_CONTEXT_FULL);
    CASE(strata_session_position(s, &pos), STRATA_OK);
    EXPECT(pos == 8);
    CASE(strata_session_logits(s, logits, i.n_vocab - 1, &n_logits), STRATA_BUFFER_TOO_SMALL);
    EXPECT(n_logits == i.n_vocab);
    CASE(strata_session_logits(s, logits, i.n_vocab, &n_logits), STRATA_OK);
    CASE(strata_session_truncate(s, 9), STRATA_INVALID_ARGUMENT);
    CASE(strata_session_truncate(s, 3), STRATA_OK);
    CASE(strata_session_logits(s, logits, i.n_vocab, &n_logits), STRATA_INVALID_STATE);
    uint32_t held[16];
    size_t n_held = 0;
    CASE(strata_session_tokens(s, held, 16, &n_held), STRATA_OK);
    EXPECT(n_held == 3 && held[2] == 3);
    /* Generating with a prompt that cannot fit. */
    strata_generate_options g = {.struct_size = sizeof g};
    MUST(strata_generate_options_default(&g));
    CASE(strata_generate(s, "a long prompt that does not fit in 8 positions", 46, &g, NULL),
         STRATA_CONTEXT_FULL);
    CASE(strata_session_reset(s), STRATA_OK);
    CASE(strata_session_position(s, &pos), STRATA_OK);
    EXPECT(pos == 0);
    size_t n_ctx = 0;
    CASE(strata_session_n_ctx(s, &n_ctx), STRATA_OK);
    EXPECT(n_ctx == 8);
    CASE(strata_session_reset(NULL), STRATA_NULL_POINTER);
    free(logits);
    strata_session_free(s);
}

static void generating(strata_model *m) {
    strata_session *s = NULL;
    MUST(strata_session_new(m, NULL, &s));
    strata_sampler_params greedy = {.struct_size = sizeof greedy};
    MUST(strata_sampler_params_greedy(&greedy));
    strata_generate_options g = {.struct_size = sizeof g};
    MUST(strata_generate_options_default(&g));
    g.sampler = &greedy;
    g.max_tokens = 10;
    strata_completion c = {.struct_size = sizeof c};

    CASE(strata_generate(NULL, "hi", 2, &g, &c), STRATA_NULL_POINTER);
    CASE(strata_generate(s, "\xe2\x82", 2, &g, &c), STRATA_INVALID_UTF8);
    g.flags = 0;
    CASE(strata_generate(s, "", 0, &g, &c), STRATA_EMPTY_INPUT);
    g.flags = 0x40;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_ARGUMENT);
    g.flags = STRATA_TOKENIZE_ADD_SPECIAL;
    strata_generate_options bad = g;
    bad.struct_size = 8;
    CASE(strata_generate(s, "hi", 2, &bad, &c), STRATA_STRUCT_SIZE);
    strata_completion badc = {.struct_size = 3};
    CASE(strata_generate(s, "hi", 2, &g, &badc), STRATA_STRUCT_SIZE);
    strata_sampler_params wrong = greedy;
    wrong.top_p = 2.0f;
    g.sampler = &wrong;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_ARGUMENT);
    g.sampler = &greedy;
    strata_str stops[1] = {{.data = "\xff", .len = 1}};
    g.stop = stops;
    g.n_stop = 1;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_UTF8);
    g.stop = NULL;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_NULL_POINTER);
    g.n_stop = 0;
    g.lookup_max_draft = 65; /* more than a pass may draft */
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_ARGUMENT);
    g.lookup_max_draft = 0;
    size_t pos = 1;
    MUST(strata_session_position(s, &pos));
    EXPECT(pos == 0); /* every failure above left the session empty */

    /* A caller built before lookup_max_draft (and the completion's draft
     * counts) existed is accepted, with plain decoding. */
    strata_generate_options old = g;
    old.struct_size = offsetof(strata_generate_options, lookup_max_draft);
    old.lookup_max_draft = 7; /* past the caller's struct: never read */
    strata_completion oldc = {.struct_size = offsetof(strata_completion, n_drafted)};
    oldc.n_drafted = 12345;
    CASE(strata_generate(s, "hi", 2, &old, &oldc), STRATA_OK);
    EXPECT(oldc.n_tokens >= 1 && oldc.n_tokens <= 10 && oldc.n_drafted == 12345);
    /* With lookup on: drafted tokens are counted, accepted ones among them. */
    MUST(strata_session_reset(s));
    g.lookup_max_draft = 4;
    CASE(strata_generate(s, "hi hi hi hi hi hi", 17, &g, &c), STRATA_OK);
    EXPECT(c.n_tokens >= 1 && c.n_tokens <= 10 && c.n_accepted <= c.n_drafted);
    /* A draft model as well as lookup: refused; the model as its own draft:
     * its drafts are accepted. */
    MUST(strata_session_reset(s));
    g.draft_model = m;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_ARGUMENT);
    g.lookup_max_draft = 0;
    g.draft_model_max = 65;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_INVALID_ARGUMENT);
    g.draft_model_max = 3;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_OK);
    EXPECT(c.n_accepted > 0 && c.n_accepted <= c.n_drafted);
    g.draft_model = NULL;
    g.draft_model_max = 0;
    MUST(strata_session_reset(s));

    /* The callback stops after 3 tokens, and re-entering the session from it
     * is refused with STRATA_BUSY. */
    struct stopper st = {.stop_after = 3, .session = s, .reentry = STRATA_OK};
    g.on_token = on_token_stop;
    g.user_data = &st;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_OK);
    EXPECT(st.seen == 3 && c.n_tokens == 3 && c.stop_reason == STRATA_STOP_CALLBACK);
    EXPECT(st.reentry == STRATA_BUSY);
    /* max_tokens 0: the prompt is evaluated and nothing generated. */
    g.max_tokens = 0;
    st.seen = 0;
    st.session = NULL;
    CASE(strata_generate(s, "hi", 2, &g, &c), STRATA_OK);
    EXPECT(st.seen == 0 && c.n_tokens == 0 && c.stop_reason == STRATA_STOP_MAX_TOKENS);
    uint32_t oob = 0xfffffff0u;
    CASE(strata_generate_tokens(s, &oob, 1, &g, &c), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_generate_tokens(s, NULL, 0, &g, &c), STRATA_EMPTY_INPUT);
    strata_session_free(s);
}

static void sampling(strata_model *m) {
    strata_sampler *smp = SENTINEL;
    CASE(strata_sampler_new(NULL, &smp), STRATA_NULL_POINTER);
    strata_sampler_params p = {.struct_size = sizeof p};
    CASE(strata_sampler_params_default(&p), STRATA_OK);
    EXPECT(p.top_k == 40 && p.seed == 42);
    strata_sampler_params q = p;
    q.repeat_penalty = 0.0f;
    CASE(strata_sampler_new(&q, &smp), STRATA_INVALID_ARGUMENT);
    q = p;
    q.temperature = NAN;
    CASE(strata_sampler_new(&q, &smp), STRATA_INVALID_ARGUMENT);
    q = p;
    q.struct_size = 0;
    CASE(strata_sampler_new(&q, &smp), STRATA_STRUCT_SIZE);
    EXPECT(smp == SENTINEL);
    CASE(strata_sampler_new(&p, NULL), STRATA_NULL_POINTER);

    q.struct_size = sizeof q;
    MUST(strata_sampler_params_greedy(&q));
    strata_sampler *g = NULL;
    MUST(strata_sampler_new(&q, &g));
    float logits[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
    uint32_t tok = 99;
    CASE(strata_sampler_sample(g, logits, 0, &tok), STRATA_INVALID_ARGUMENT);
    CASE(strata_sampler_sample(g, NULL, 5, &tok), STRATA_NULL_POINTER);
    CASE(strata_sampler_sample(g, logits, 5, NULL), STRATA_NULL_POINTER);
    EXPECT(tok == 99);
    CASE(strata_sampler_sample(g, logits, 5, &tok), STRATA_OK);
    EXPECT(tok == 1); /* argmax, ties to the lowest id */

    strata_session *s = NULL;
    MUST(strata_session_new(m, NULL, &s));
    CASE(strata_sampler_sample_session(g, s, &tok), STRATA_INVALID_STATE);
    uint32_t prompt[3] = {5, 6, 7};
    MUST(strata_session_feed(s, prompt, 3));
    CASE(strata_sampler_sample_session(g, s, &tok), STRATA_OK);

    /* The same seed gives the same tokens. */
    strata_sampler *a = NULL, *b = NULL;
    p.seed = 7;
    MUST(strata_sampler_new(&p, &a));
    MUST(strata_sampler_new(&p, &b));
    int same = 1;
    for (int k = 0; k < 20; k++) {
        uint32_t ta = 0, tb = 1;
        MUST(strata_sampler_sample_session(a, s, &ta));
        MUST(strata_sampler_sample_session(b, s, &tb));
        same &= ta == tb;
    }
    EXPECT(same);
    CASE(strata_sampler_reset(a), STRATA_OK);
    CASE(strata_sampler_accept(NULL, 3), STRATA_NULL_POINTER);
    strata_sampler_free(a);
    strata_sampler_free(b);
    strata_sampler_free(g);
    strata_session_free(s);
}

/* ---- the scheduler ------------------------------------------------------ */

struct collected {
    uint32_t tokens[256];
    size_t n;
};

static bool on_token_collect(void *ud, uint32_t token, const char *text, size_t text_len) {
    struct collected *c = ud;
    (void)text;
    (void)text_len;
    if (c->n < 256) c->tokens[c->n++] = token;
    return true;
}

/* A request polled to its end: its tokens, its text, its last event. */
struct request_run {
    uint32_t tokens[256];
    size_t n;
    char text[4096];
    size_t text_len;
    strata_request_event done;
};

static void drain(strata_scheduler *s, uint64_t id, struct request_run *r) {
    memset(r, 0, sizeof *r);
    for (;;) {
        strata_request_event ev = {.struct_size = sizeof ev};
        char piece[512];
        size_t len = 0;
        MUST(strata_scheduler_poll(s, id, 60000, &ev, piece, sizeof piece, &len));
        if (r->text_len + len < sizeof r->text) {
            memcpy(r->text + r->text_len, piece, len);
            r->text_len += len;
            r->text[r->text_len] = '\0';
        }
        if (ev.kind == STRATA_EVENT_DONE) {
            r->done = ev;
            return;
        }
        if (r->n < 256) r->tokens[r->n++] = ev.token;
    }
}

static strata_scheduler *new_scheduler(strata_model *m, uint32_t slots, uint32_t n_ctx,
                                       uint32_t max_queue) {
    strata_scheduler_options o = {.struct_size = sizeof o};
    MUST(strata_scheduler_options_default(&o));
    o.slots = slots;
    o.n_ctx = n_ctx;
    o.max_queue = max_queue;
    strata_scheduler *s = NULL;
    MUST(strata_scheduler_new(m, &o, &s));
    return s;
}

/* The scheduler (on a batch-invariant load of MODEL, so that a request's
 * tokens do not depend on the batch it ran in): creation, submission and
 * polling misuse, typed refusals, a full queue, timeouts, cancelling, a
 * too-small text buffer, freeing with requests in flight, and a greedy
 * generation equal to a session's. */
static void scheduling(const char *path) {
    strata_load_options lo = {.struct_size = sizeof lo};
    MUST(strata_load_options_default(&lo));
    lo.numerics = STRATA_NUMERICS_BATCH_INVARIANT;
    lo.n_threads = 2;
    strata_model *m = NULL;
    MUST(strata_model_load(path, &lo, &m));
    strata_model_info mi = {.struct_size = sizeof mi};
    MUST(strata_model_get_info(m, &mi));

    /* Creation. */
    strata_scheduler *s = SENTINEL;
    CASE(strata_scheduler_new(NULL, NULL, &s), STRATA_NULL_POINTER);
    CASE(strata_scheduler_new(m, NULL, NULL), STRATA_NULL_POINTER);
    CASE(strata_scheduler_options_default(NULL), STRATA_NULL_POINTER);
    strata_scheduler_options so = {.struct_size = 4};
    CASE(strata_scheduler_new(m, &so, &s), STRATA_STRUCT_SIZE);
    so.struct_size = sizeof so;
    MUST(strata_scheduler_options_default(&so));
    EXPECT(so.slots == 0 && so.n_ctx == 0 && so.kv_budget_bytes == 0);
    so.slots = 2000; /* above 1024 */
    CASE(strata_scheduler_new(m, &so, &s), STRATA_INVALID_ARGUMENT);
    so.slots = 8;
    so.max_batch_tokens = 4; /* fewer than the slots that decode each step */
    CASE(strata_scheduler_new(m, &so, &s), STRATA_INVALID_ARGUMENT);
    so.max_batch_tokens = 0;
    so.n_ctx = (1u << 24) + 1;
    CASE(strata_scheduler_new(m, &so, &s), STRATA_INVALID_ARGUMENT);
    struct {
        strata_scheduler_options o;
        uint64_t future;
    } big;
    memset(&big, 0, sizeof big);
    big.o.struct_size = sizeof big;
    big.future = 1;
    CASE(strata_scheduler_new(m, &big.o, &s), STRATA_STRUCT_SIZE);
    strata_model *half = load(path, 0, 1);
    CASE(strata_scheduler_new(half, NULL, &s), STRATA_WRONG_SHARD);
    strata_model_free(half);
    EXPECT(s == SENTINEL);

    /* One slot, a queue of one, 64 positions. */
    s = new_scheduler(m, 1, 64, 1);
    strata_scheduler_options got = {.struct_size = sizeof got};
    CASE(strata_scheduler_get_options(NULL, &got), STRATA_NULL_POINTER);
    CASE(strata_scheduler_get_options(s, NULL), STRATA_NULL_POINTER);
    CASE(strata_scheduler_get_options(s, &got), STRATA_OK);
    EXPECT(got.slots == 1 && got.n_ctx == 64 && got.max_queue == 1 && got.max_batch_tokens == 512 &&
           got.prefill_chunk == 256 && got.kv_budget_bytes > 0);

    uint32_t prompt[8] = {256, 40, 41, 42, 43, 44, 45, 46};
    uint32_t long_prompt[65];
    for (int k = 0; k < 65; k++) long_prompt[k] = (uint32_t)(k * 7 % 200);
    strata_request_params rp = {.struct_size = sizeof rp};
    CASE(strata_request_params_default(NULL), STRATA_NULL_POINTER);
    MUST(strata_request_params_default(&rp));
    EXPECT(rp.max_tokens == 128 && rp.sampler == NULL && rp.n_stop == 0 && rp.logprobs == 0);
    uint64_t id = 777;
    CASE(strata_scheduler_submit(NULL, prompt, 8, &rp, &id), STRATA_NULL_POINTER);
    CASE(strata_scheduler_submit(s, NULL, 8, &rp, &id), STRATA_NULL_POINTER);
    CASE(strata_scheduler_submit(s, prompt, 8, &rp, NULL), STRATA_NULL_POINTER);
    CASE(strata_scheduler_submit(s, NULL, 0, &rp, &id), STRATA_EMPTY_INPUT);
    uint32_t oob[2] = {1, mi.n_vocab};
    CASE(strata_scheduler_submit(s, oob, 2, &rp, &id), STRATA_TOKEN_OUT_OF_RANGE);
    CASE(strata_scheduler_submit(s, long_prompt, 65, &rp, &id), STRATA_CONTEXT_FULL);
    strata_request_params bad = rp;
    bad.struct_size = 8;
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_STRUCT_SIZE);
    bad = rp;
    bad.logprobs = 1;
    bad.top_logprobs = STRATA_MAX_TOP_LOGPROBS + 1;
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_INVALID_ARGUMENT);
    bad = rp;
    bad.top_logprobs = 2; /* without logprobs */
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_INVALID_ARGUMENT);
    strata_sampler_params nan_temp = {.struct_size = sizeof nan_temp};
    MUST(strata_sampler_params_default(&nan_temp));
    nan_temp.temperature = NAN;
    bad = rp;
    bad.sampler = &nan_temp;
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_INVALID_ARGUMENT);
    strata_str bad_stop = {"\xff\xfe", 2};
    bad = rp;
    bad.stop = &bad_stop;
    bad.n_stop = 1;
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_INVALID_UTF8);
    bad.stop = NULL;
    CASE(strata_scheduler_submit(s, prompt, 8, &bad, &id), STRATA_NULL_POINTER);
    EXPECT(id == 777);
    strata_scheduler_free(s);

    /* A budget no request fits. */
    so.struct_size = sizeof so;
    MUST(strata_scheduler_options_default(&so));
    so.kv_budget_bytes = 1;
    s = NULL;
    MUST(strata_scheduler_new(m, &so, &s));
    CASE(strata_scheduler_submit(s, prompt, 8, NULL, &id), STRATA_KV_BUDGET);
    EXPECT(id == 777);
    strata_scheduler_free(s);

    /* One slot, a queue of one, long requests: a runs, b waits, c is refused. */
    s = new_scheduler(m, 1, 4096, 1);
    strata_request_params lp = rp;
    lp.max_tokens = 4000;
    lp.ignore_eos = 1;
    uint64_t a = 0, b = 0, c = 0;
    MUST(strata_scheduler_submit(s, prompt, 8, &lp, &a));
    MUST(strata_scheduler_submit(s, prompt, 8, &lp, &b));
    EXPECT(a != b);
    CASE(strata_scheduler_submit(s, prompt, 8, &lp, &c), STRATA_QUEUE_FULL);
    EXPECT(c == 0);

    /* Polling misuse; b cannot have an event while a runs. */
    strata_request_event ev = {.struct_size = sizeof ev};
    char txt[256];
    size_t tl = 999;
    CASE(strata_scheduler_poll(NULL, a, 0, &ev, txt, sizeof txt, &tl), STRATA_NULL_POINTER);
    CASE(strata_scheduler_poll(s, a, 0, NULL, txt, sizeof txt, &tl), STRATA_NULL_POINTER);
    CASE(strata_scheduler_poll(s, a, 0, &ev, txt, sizeof txt, NULL), STRATA_NULL_POINTER);
    CASE(strata_scheduler_poll(s, a, 0, &ev, NULL, 5, &tl), STRATA_NULL_POINTER);
    ev.struct_size = 3;
    CASE(strata_scheduler_poll(s, a, 0, &ev, txt, sizeof txt, &tl), STRATA_STRUCT_SIZE);
    ev.struct_size = sizeof ev;
    CASE(strata_scheduler_poll(s, 424242, 0, &ev, txt, sizeof txt, &tl), STRATA_NOT_FOUND);
    CASE(strata_scheduler_poll(s, b, 0, &ev, txt, sizeof txt, &tl), STRATA_TIMEOUT);
    CASE(strata_scheduler_poll(s, b, 5, &ev, txt, sizeof txt, &tl), STRATA_TIMEOUT);
    EXPECT(tl == 999);
    CASE(strata_scheduler_cancel(NULL, a), STRATA_NULL_POINTER);
    CASE(strata_scheduler_cancel(s, 424242), STRATA_NOT_FOUND);

    /* A buffer too small for the text: the length needed, and the event is
     * kept for the next poll. */
    CASE(strata_scheduler_poll(s, a, 60000, &ev, NULL, 0, &tl), STRATA_BUFFER_TOO_SMALL);
    size_t need = tl;
    EXPECT(need < sizeof txt);
    tl = 999;
    CASE(strata_scheduler_poll(s, a, 0, &ev, txt, need + 1, &tl), STRATA_OK);
    EXPECT(tl == need && txt[need] == '\0' && ev.kind == STRATA_EVENT_TOKEN &&
           ev.token < mi.n_vocab && ev.finish_reason == STRATA_FINISH_NONE && ev.has_logprob == 0);

    strata_scheduler_stats st = {.struct_size = sizeof st};
    CASE(strata_scheduler_get_stats(NULL, &st), STRATA_NULL_POINTER);
    CASE(strata_scheduler_get_stats(s, NULL), STRATA_NULL_POINTER);
    st.struct_size = 0;
    CASE(strata_scheduler_get_stats(s, &st), STRATA_STRUCT_SIZE);
    st.struct_size = sizeof st;
    CASE(strata_scheduler_get_stats(s, &st), STRATA_OK);
    EXPECT(st.slots == 1 && st.running == 1 && st.queued == 1 && st.kv_bytes_budget > 0);

    /* Cancel, then poll: both end cancelled (b before its first token), and
     * are then forgotten. */
    CASE(strata_scheduler_cancel(s, b), STRATA_OK);
    CASE(strata_scheduler_cancel(s, a), STRATA_OK);
    struct request_run ra, rb;
    drain(s, a, &ra);
    drain(s, b, &rb);
    EXPECT(ra.done.finish_reason == STRATA_FINISH_CANCELLED && ra.done.completion_tokens < 4000 &&
           ra.done.prompt_tokens == 8 && ra.done.token == STRATA_TOKEN_NONE);
    EXPECT(rb.done.finish_reason == STRATA_FINISH_CANCELLED && rb.n == 0 &&
           rb.done.completion_tokens == 0 && rb.done.time_to_first_token_ms == 0.0);
    CASE(strata_scheduler_poll(s, a, 0, &ev, txt, sizeof txt, &tl), STRATA_NOT_FOUND);
    CASE(strata_scheduler_poll(s, b, 0, &ev, txt, sizeof txt, &tl), STRATA_NOT_FOUND);
    CASE(strata_scheduler_cancel(s, a), STRATA_NOT_FOUND);
    /* The queue has room again. */
    strata_request_params two = rp;
    two.max_tokens = 2;
    two.ignore_eos = 1;
    CASE(strata_scheduler_submit(s, prompt, 8, &two, &c), STRATA_OK);
    struct request_run rc;
    drain(s, c, &rc);
    EXPECT(rc.n == 2 && rc.done.finish_reason == STRATA_FINISH_MAX_TOKENS &&
           rc.done.completion_tokens == 2);
    strata_scheduler_free(s);

    /* Greedy generation, two requests batched together: each request's
     * tokens equal a session's greedy tokens for its prompt, and its events'
     * texts make the detokenized text. */
    strata_sampler_params greedy = {.struct_size = sizeof greedy};
    MUST(strata_sampler_params_greedy(&greedy));
    uint32_t other[5] = {256, 100, 120, 140, 160};
    const uint32_t *prompts[2] = {prompt, other};
    const size_t lens[2] = {8, 5};
    s = new_scheduler(m, 0, 0, 0); /* the defaults: 4 slots */
    strata_request_params gp = rp;
    gp.sampler = &greedy;
    gp.max_tokens = 16;
    uint64_t ids[2];
    for (int k = 0; k < 2; k++) MUST(strata_scheduler_submit(s, prompts[k], lens[k], &gp, &ids[k]));
    struct request_run runs[2];
    for (int k = 0; k < 2; k++) drain(s, ids[k], &runs[k]);
    for (int k = 0; k < 2; k++) {
        strata_session *sess = NULL;
        MUST(strata_session_new(m, NULL, &sess));
        struct collected want = {.n = 0};
        strata_generate_options g = {.struct_size = sizeof g};
        MUST(strata_generate_options_default(&g));
        g.sampler = &greedy;
        g.max_tokens = 16;
        g.on_token = on_token_collect;
        g.user_data = &want;
        MUST(strata_generate_tokens(sess, prompts[k], lens[k], &g, NULL));
        strata_session_free(sess);
        struct request_run *r = &runs[k];
        EXPECT(want.n > 0 && r->n == want.n &&
               memcmp(r->tokens, want.tokens, want.n * sizeof(uint32_t)) == 0);
        EXPECT(r->done.completion_tokens == r->n && r->done.prompt_tokens == lens[k]);
        EXPECT(r->done.finish_reason == (r->n == 16 ? STRATA_FINISH_MAX_TOKENS : STRATA_FINISH_EOG));
        char detok[4096];
        size_t dl = 0;
        MUST(strata_detokenize(m, r->tokens, r->n, 0, detok, sizeof detok, &dl));
        EXPECT(dl == r->text_len && memcmp(detok, r->text, dl) == 0);
    }
    MUST(strata_scheduler_get_stats(s, &st));
    EXPECT(st.slots == 4 && st.running == 0 && st.queued == 0 && st.requests_total == 2 &&
           st.prompt_tokens_total == 13 && st.ttft_count == 2 && st.steps_total > 0);
    strata_scheduler_free(s);

    /* Freeing with requests running, queued and unpolled: they are cancelled
     * and nothing leaks. */
    s = new_scheduler(m, 2, 4096, 4);
    for (int k = 0; k < 5; k++) MUST(strata_scheduler_submit(s, prompt, 8, &lp, &id));
    MUST(strata_scheduler_poll(s, id - 4, 60000, &ev, txt, sizeof txt, &tl));
    strata_scheduler_free(s);
    EXPECT(1); /* still alive */

    strata_model_free(m);
}

static size_t encode_tokens(const uint8_t *digest, uint64_t session, uint64_t pos,
                            const uint32_t *ids, size_t n, uint8_t *out, size_t cap) {
    size_t len = 0;
    MUST(strata_frame_encode_tokens(digest, 32, session, pos, ids, n, out, cap, &len));
    return len;
}

static void frames_and_shards(const char *path, const char *other_path) {
    strata_model *lo = load(path, 0, 1);
    strata_model_info li = {.struct_size = sizeof li};
    MUST(strata_model_get_info(lo, &li));
    strata_model *hi = load(path, 1, li.n_layer);
    strata_model *other = load(other_path, 0, 1);

    strata_shard *s0 = SENTINEL;
    CASE(strata_shard_new(NULL, NULL, &s0), STRATA_NULL_POINTER);
    strata_shard_limits lim = {.struct_size = sizeof lim};
    MUST(strata_shard_limits_default(&lim));
    lim.max_sessions = 0;
    CASE(strata_shard_new(lo, &lim, &s0), STRATA_INVALID_ARGUMENT);
    MUST(strata_shard_limits_default(&lim));
    lim.output_dtype = 7;
    CASE(strata_shard_new(lo, &lim, &s0), STRATA_INVALID_ARGUMENT);
    lim.output_dtype = STRATA_DTYPE_U32;
    CASE(strata_shard_new(lo, &lim, &s0), STRATA_INVALID_ARGUMENT);
    EXPECT(s0 == SENTINEL);
    MUST(strata_shard_limits_default(&lim));
    lim.max_sessions = 2;
    lim.n_ctx = 16;
    strata_shard *s1 = NULL;
    MUST(strata_shard_new(lo, &lim, &s0));
    MUST(strata_shard_new(hi, &lim, &s1));

    uint8_t digest[32], other_digest[32];
    MUST(strata_shard_digest(s0, digest, 32));
    MUST(strata_model_digest(other, other_digest, 32));
    EXPECT(memcmp(digest, other_digest, 32) != 0);

    uint32_t ids[4] = {10, 11, 12, 13};
    uint8_t frame[1024];
    size_t len = 0;
    CASE(strata_frame_encode_tokens(digest, 31, 1, 0, ids, 4, frame, sizeof frame, &len),
         STRATA_INVALID_ARGUMENT);
    CASE(strata_frame_encode_tokens(digest, 32, 1, 0, ids, 0, frame, sizeof frame, &len),
         STRATA_EMPTY_INPUT);
    CASE(strata_frame_encode_tokens(digest, 32, 1, 0, ids, 4, frame, 10, &len),
         STRATA_BUFFER_TOO_SMALL);
    EXPECT(len == STRATA_FRAME_HEADER_LEN + 16 + STRATA_FRAME_CHECKSUM_LEN);
    len = encode_tokens(digest, 1, 0, ids, 4, frame, sizeof frame);

    strata_frame_info fi = {.struct_size = sizeof fi};
    CASE(strata_frame_decode(frame, len, &fi), STRATA_OK);
    EXPECT(fi.kind == STRATA_FRAME_TOKENS && fi.n_tokens == 4 && fi.width == 1 &&
           memcmp(fi.model, digest, 32) == 0);
    CASE(strata_frame_decode(frame, len - 1, &fi), STRATA_FRAME_MALFORMED);
    CASE(strata_frame_decode(frame, 40, &fi), STRATA_FRAME_MALFORMED);
    CASE(strata_frame_decode(NULL, 0, &fi), STRATA_FRAME_MALFORMED);
    uint8_t corrupt[1024];
    memcpy(corrupt, frame, len);
    corrupt[STRATA_FRAME_HEADER_LEN + 2] ^= 0x10;
    CASE(strata_frame_decode(corrupt, len, &fi), STRATA_FRAME_CHECKSUM);
    memcpy(corrupt, frame, len);
    corrupt[0] = 'X';
    CASE(strata_frame_decode(corrupt, len, &fi), STRATA_FRAME_MALFORMED);
    size_t total = 0;
    CASE(strata_frame_length(frame, STRATA_FRAME_HEADER_LEN, &total), STRATA_OK);
    EXPECT(total == len);
    float vals[8];
    size_t nv = 0;
    CASE(strata_frame_values(frame, len, vals, 8, &nv), STRATA_FRAME_WRONG_KIND);
    uint32_t back[4];
    CASE(strata_frame_tokens(frame, len, back, 3, &nv), STRATA_BUFFER_TOO_SMALL);
    EXPECT(nv == 4);
    CASE(strata_frame_tokens(frame, len, back, 4, &nv), STRATA_OK);
    EXPECT(nv == 4 && back[3] == 13);

    /* Forward: the output size first, then a too-small buffer, then the run. */
    size_t out_len = 0, need = 0;
    CASE(strata_shard_output_len(s0, frame, len, &need), STRATA_OK);
    EXPECT(need == STRATA_FRAME_HEADER_LEN + 4 * 4 * li.n_embd + STRATA_FRAME_CHECKSUM_LEN);
    uint8_t *hidden = malloc(need);
    CASE(strata_shard_forward(s0, frame, len, hidden, need - 1, &out_len), STRATA_BUFFER_TOO_SMALL);
    EXPECT(out_len == need);
    uint64_t spos = 9;
    MUST(strata_shard_position(s0, 1, &spos));
    EXPECT(spos == 0);
    CASE(strata_shard_forward(s0, corrupt, len, hidden, need, &out_len), STRATA_FRAME_MALFORMED);
    CASE(strata_shard_forward(s0, frame, len, hidden, need, &out_len), STRATA_OK);
    MUST(strata_shard_position(s0, 1, &spos));
    EXPECT(spos == 4);

    /* The hidden frame is for s1: sending it to s0 is the wrong kind; a
     * tokens frame to s1 too. */
    size_t h_len = out_len;
    uint8_t tmp[4096];
    size_t tmp_len = 0;
    CASE(strata_shard_forward(s0, hidden, h_len, hidden, need, &out_len), STRATA_INVALID_ARGUMENT);
    CASE(strata_shard_forward(s0, hidden, h_len, tmp, sizeof tmp, &tmp_len), STRATA_FRAME_WRONG_KIND);
    CASE(strata_shard_forward(s1, frame, len, tmp, sizeof tmp, &tmp_len), STRATA_FRAME_WRONG_KIND);
    size_t logits_need = 0;
    MUST(strata_shard_output_len(s1, hidden, h_len, &logits_need));
    uint8_t *logits = malloc(logits_need);
    CASE(strata_shard_forward(s1, hidden, h_len, logits, logits_need, &tmp_len), STRATA_OK);
    EXPECT(tmp_len == logits_need);
    uint8_t d1[32];
    CASE(strata_frame_payload_digest(logits, tmp_len, d1, 31), STRATA_BUFFER_TOO_SMALL);
    CASE(strata_frame_payload_digest(logits, tmp_len, d1, 32), STRATA_OK);

    /* A frame for the other model. */
    uint8_t wrong[1024];
    size_t wlen = encode_tokens(other_digest, 1, 4, ids, 1, wrong, sizeof wrong);
    CASE(strata_shard_forward(s0, wrong, wlen, hidden, need, &out_len), STRATA_FRAME_WRONG_MODEL);
    /* Wrong boundary and width: re-encode the hidden frame's values. */
    float *hv = malloc(sizeof(float) * 4 * li.n_embd);
    size_t n_hv = 0;
    MUST(strata_frame_values(hidden, h_len, hv, 4 * li.n_embd, &n_hv));
    strata_frame_info hi_info = {.struct_size = sizeof hi_info};
    MUST(strata_frame_decode(hidden, h_len, &hi_info));
    strata_frame_info h2 = hi_info;
    h2.kind = STRATA_FRAME_LOGITS;
    uint8_t *reenc = malloc(need + 64);
    size_t rlen = 0;
    MUST(strata_frame_encode_floats(&h2, hv, n_hv, reenc, need + 64, &rlen));
    CASE(strata_shard_forward(s1, reenc, rlen, tmp, sizeof tmp, &tmp_len), STRATA_FRAME_WRONG_KIND);
    h2.kind = STRATA_FRAME_HIDDEN;
    h2.boundary = li.n_layer;
    MUST(strata_frame_encode_floats(&h2, hv, n_hv, reenc, need + 64, &rlen));
    CASE(strata_shard_forward(s1, reenc, rlen, tmp, sizeof tmp, &tmp_len), STRATA_FRAME_WRONG_BOUNDARY);
    h2 = hi_info;
    h2.width = li.n_embd / 2;
    MUST(strata_frame_encode_floats(&h2, hv, n_hv, reenc, need + 64, &rlen));
    CASE(strata_shard_forward(s1, reenc, rlen, tmp, sizeof tmp, &tmp_len), STRATA_FRAME_WRONG_WIDTH);
    h2 = hi_info;
    h2.kind = STRATA_FRAME_TOKENS;
    CASE(strata_frame_encode_floats(&h2, hv, n_hv, reenc, need + 64, &rlen), STRATA_INVALID_ARGUMENT);
    h2 = hi_info;
    CASE(strata_frame_encode_floats(&h2, hv, n_hv - 1, reenc, need + 64, &rlen), STRATA_INVALID_ARGUMENT);
    /* A gap: position 9 when session 1 holds 4. */
    size_t glen = encode_tokens(digest, 1, 9, ids, 1, wrong, sizeof wrong);
    CASE(strata_shard_forward(s0, wrong, glen, hidden, need, &out_len), STRATA_FRAME_WRONG_POSITION);
    /* An out-of-range token leaves the session as it was. */
    uint32_t oob = li.n_vocab;
    size_t olen = encode_tokens(digest, 1, 4, &oob, 1, wrong, sizeof wrong);
    CASE(strata_shard_forward(s0, wrong, olen, hidden, need, &out_len), STRATA_TOKEN_OUT_OF_RANGE);
    MUST(strata_shard_position(s0, 1, &spos));
    EXPECT(spos == 4);
    /* Session limit 2: sessions 1 and 2 open, 3 refused. */
    size_t l2 = encode_tokens(digest, 2, 0, ids, 1, wrong, sizeof wrong);
    CASE(strata_shard_forward(s0, wrong, l2, hidden, need, &out_len), STRATA_OK);
    size_t l3 = encode_tokens(digest, 3, 0, ids, 1, wrong, sizeof wrong);
    CASE(strata_shard_forward(s0, wrong, l3, hidden, need, &out_len), STRATA_TOO_MANY_SESSIONS);
    size_t n_sessions = 0;
    MUST(strata_shard_n_sessions(s0, &n_sessions));
    EXPECT(n_sessions == 2);
    CASE(strata_shard_truncate(s0, 77, 0), STRATA_UNKNOWN_SESSION);
    CASE(strata_shard_close(s0, 77), STRATA_UNKNOWN_SESSION);
    CASE(strata_shard_close(s0, 2), STRATA_OK);
    CASE(strata_shard_forward(s0, wrong, l3, hidden, need, &out_len), STRATA_OK);
    CASE(strata_shard_truncate(s0, 1, 2), STRATA_OK);
    MUST(strata_shard_position(s0, 1, &spos));
    EXPECT(spos == 2);
    /* Context limit 16 on the shard's sessions. */
    uint32_t many[20] = {0};
    size_t lm = encode_tokens(digest, 1, 2, many, 20, frame, sizeof frame);
    uint8_t *big = malloc(STRATA_FRAME_HEADER_LEN + 20 * 4 * li.n_embd + STRATA_FRAME_CHECKSUM_LEN);
    CASE(strata_shard_forward(s0, frame, lm, big, STRATA_FRAME_HEADER_LEN + 20 * 4 * li.n_embd + 32,
                              &out_len),
         STRATA_CONTEXT_FULL);
    MUST(strata_shard_position(s0, 1, &spos));
    EXPECT(spos == 2);

    free(big);
    free(reenc);
    free(hv);
    free(logits);
    free(hidden);
    strata_shard_free(s0);
    strata_shard_free(s1);
    strata_model_free(lo);
    strata_model_free(hi);
    strata_model_free(other);
}

static void splitting(const char *path, const char *dir) {
    strata_layer_range r[2] = {{0, 1}, {1, 2}};
    char paths[4096];
    size_t len = 0;
    CASE(strata_split(path, r, 0, dir, paths, sizeof paths, &len), STRATA_INVALID_ARGUMENT);
    CASE(strata_split(path, NULL, 2, dir, paths, sizeof paths, &len), STRATA_NULL_POINTER);
    CASE(strata_split(path, r, 2, NULL, paths, sizeof paths, &len), STRATA_NULL_POINTER);
    strata_layer_range past[1] = {{0, 99}};
    CASE(strata_split(path, past, 1, dir, paths, sizeof paths, &len), STRATA_INVALID_ARGUMENT);
    CASE(strata_split(path, r, 2, dir, paths, 10, &len), STRATA_BUFFER_TOO_SMALL);
    size_t need = len;
    CASE(strata_split(path, r, 2, dir, paths, need + 1, &len), STRATA_OK);
    EXPECT(len == need && strchr(paths, '\n') != NULL);
    char first[2048];
    size_t flen = (size_t)(strchr(paths, '\n') - paths);
    memcpy(first, paths, flen);
    first[flen] = '\0';
    strata_model *shard = NULL;
    CASE(strata_model_load(first, NULL, &shard), STRATA_OK);
    strata_model_info i = {.struct_size = sizeof i};
    MUST(strata_model_get_info(shard, &i));
    EXPECT((i.flags & STRATA_MODEL_SHARD_FILE) && i.layer_start == 0 && i.layer_end == 1);
    strata_model *whole = load(path, 0, 0);
    uint8_t a[32], b[32];
    MUST(strata_model_digest(shard, a, 32));
    MUST(strata_model_digest(whole, b, 32));
    EXPECT(memcmp(a, b, 32) == 0);
    strata_layer_range all[1] = {{0, 1}};
    CASE(strata_split(first, all, 1, dir, NULL, 0, NULL), STRATA_INVALID_ARGUMENT);
    strata_model_free(shard);
    strata_model_free(whole);
}

static void logging(const char *path) {
    struct log_sink sink = {0};
    CASE(strata_set_log_callback(on_log, &sink, 9), STRATA_INVALID_ARGUMENT);
    CASE(strata_set_log_callback(on_log, &sink, STRATA_LOG_INFO), STRATA_OK);
    strata_model *m = load(path, 0, 0);
    EXPECT(sink.messages >= 2 && sink.loaded == 1);
    EXPECT(sink.reentry == STRATA_BUSY); /* set from inside the callback */
    CASE(strata_set_log_callback(NULL, NULL, 0), STRATA_OK);
    int before = sink.messages;
    strata_model_free(m);
    m = load(path, 0, 0);
    EXPECT(sink.messages == before);
    strata_model_free(m);
}

static void freeing_null(void) {
    strata_model_free(NULL);
    strata_session_free(NULL);
    strata_sampler_free(NULL);
    strata_shard_free(NULL);
    strata_scheduler_free(NULL);
    EXPECT(1); /* still alive */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL OTHER_MODEL WORK_DIR\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *other = argv[2], *dir = argv[3];
    general();
    loading(path, dir);
    batch_invariant(path);
    strata_model *m = load(path, 0, 0);
    info(m);
    tokenizing(m);
    sessions(m, path);
    generating(m);
    sampling(m);
    strata_model_free(m);
    scheduling(path);
    frames_and_shards(path, other);
    splitting(path, dir);
    logging(path);
    freeing_null();
    printf("misuse: %d passed, %d failed\n", n_cases - n_failed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
