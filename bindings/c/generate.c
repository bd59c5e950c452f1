/*
 * generate.c: the Strata C interface end to end.
 *
 *   generate MODEL PROMPT N_TOKENS
 *
 * 1. loads MODEL (progress on stderr) and greedily generates N_TOKENS after
 *    PROMPT, printing PROMPT and the text to stdout exactly as
 *    `strata generate -m MODEL -p PROMPT -n N_TOKENS --temp 0` does;
 * 2. runs the same greedy decode through a two-shard pipeline: the model's
 *    layers are loaded as two ranges (only each range's weights are bound),
 *    each served by a strata_shard, with token and hidden-state frames
 *    passed between them; it checks that the pipeline picks the same tokens
 *    and prints the output digests of the last step (stderr).
 *
 * Exit status: 0 on success, 1 on any failure (with the library's message).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"

static int fail(const char *what, strata_status st) {
    char msg[512];
    strata_last_error(msg, sizeof msg, NULL);
    fprintf(stderr, "generate: %s failed: %s: %s\n", what, strata_status_name(st), msg);
    return 1;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        strata_status st_ = (call);                                                                \
        if (st_ != STRATA_OK) return fail(#call, st_);                                             \
    } while (0)

static bool on_progress(void *user_data, strata_load_stage stage, float progress) {
    (void)user_data;
    static const char *names[] = {"", "opened", "layers bound", "tokenizer loaded", "done"};
    fprintf(stderr, "load: %-16s %3.0f%%\n", stage <= 4 ? names[stage] : "?", progress * 100.0);
    return true;
}

struct tokens {
    uint32_t ids[4096];
    size_t n;
};

static bool on_token(void *user_data, uint32_t token, const char *text, size_t text_len) {
    struct tokens *t = user_data;
    if (t->n < sizeof t->ids / sizeof t->ids[0]) t->ids[t->n++] = token;
    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    return true;
}

static void hex(const uint8_t *d, char out[65]) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static uint32_t argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (uint32_t)best;
}

/* Greedy decode through two shards; compares with the tokens in `want`. */
static int pipeline(const char *path, const char *prompt, const struct tokens *want) {
    strata_model *whole = NULL, *lo = NULL, *hi = NULL;
    strata_shard *s0 = NULL, *s1 = NULL;
    uint8_t *in = NULL, *mid = NULL, *out = NULL;
    float *logits = NULL;
    int rc = 1;
    strata_status st;
/* Inside pipeline(): on failure, report and release everything. */
#define PTRY(call)                                                                                 \
    do {                                                                                           \
        if ((st = (call)) != STRATA_OK) { rc = fail(#call, st); goto done; }                       \
    } while (0)

    PTRY(strata_model_load(path, NULL, &whole));
    strata_model_info info = {.struct_size = sizeof info};
    PTRY(strata_model_get_info(whole, &info));
    uint32_t cut = info.n_layer / 2;

    strata_load_options opt = {.struct_size = sizeof opt};
    PTRY(strata_load_options_default(&opt));
    opt.layer_start = 0;
    opt.layer_end = cut;
    PTRY(strata_model_load(path, &opt, &lo));
    opt.layer_start = cut;
    opt.layer_end = info.n_layer;
    PTRY(strata_model_load(path, &opt, &hi));
    PTRY(strata_shard_new(lo, NULL, &s0));
    PTRY(strata_shard_new(hi, NULL, &s1));
    /* The shards keep their models alive. */
    strata_model_free(lo);
    strata_model_free(hi);
    lo = hi = NULL;

    uint8_t digest[STRATA_DIGEST_LEN];
    PTRY(strata_shard_digest(s0, digest, sizeof digest));

    uint32_t ids[4096];
    size_t n_ids = 0;
    PTRY(strata_tokenize(whole, prompt, strlen(prompt),
                        STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL, ids,
                        sizeof ids / sizeof ids[0], &n_ids));

    logits = malloc(sizeof(float) * info.n_vocab);
    size_t cap_in = 0, cap_mid = 0, cap_out = 0;
    uint64_t pos = 0;
    const uint64_t session = 42;
    size_t matched = 0;
    char hex_mid[65] = "", hex_out[65] = "";
    for (size_t step = 0; step < want->n; step++) {
        const uint32_t *feed = step == 0 ? ids : &want->ids[step - 1];
        size_t n_feed = step == 0 ? n_ids : 1;
        size_t len_in = 0, len_mid = 0, len_out = 0;
        /* Ask for the sizes, grow the buffers, then encode and forward. */
        st = strata_frame_encode_tokens(digest, sizeof digest, session, pos, feed,
                                                      n_feed, in, cap_in, &len_in);
        if (st == STRATA_BUFFER_TOO_SMALL) {
            in = realloc(in, cap_in = len_in);
            st = strata_frame_encode_tokens(digest, sizeof digest, session, pos, feed, n_feed, in,
                                            cap_in, &len_in);
        }
        if (st != STRATA_OK) { rc = fail("strata_frame_encode_tokens", st); goto done; }
        PTRY(strata_shard_output_len(s0, in, len_in, &len_mid));
        if (len_mid > cap_mid) mid = realloc(mid, cap_mid = len_mid);
        PTRY(strata_shard_forward(s0, in, len_in, mid, cap_mid, &len_mid));
        PTRY(strata_shard_output_len(s1, mid, len_mid, &len_out));
        if (len_out > cap_out) out = realloc(out, cap_out = len_out);
        PTRY(strata_shard_forward(s1, mid, len_mid, out, cap_out, &len_out));

        strata_frame_info fi = {.struct_size = sizeof fi};
        PTRY(strata_frame_decode(out, len_out, &fi));
        size_t n_values = 0;
        PTRY(strata_frame_values(out, len_out, logits, info.n_vocab, &n_values));
        uint32_t tok = argmax(logits, n_values);
        if (tok != want->ids[step]) {
            fprintf(stderr, "pipeline: step %zu picked %u, the session picked %u\n", step, tok,
                    want->ids[step]);
            goto done;
        }
        matched++;
        pos += n_feed;

        uint8_t d[STRATA_DIGEST_LEN];
        PTRY(strata_frame_payload_digest(mid, len_mid, d, sizeof d));
        hex(d, hex_mid);
        PTRY(strata_frame_payload_digest(out, len_out, d, sizeof d));
        hex(d, hex_out);
    }
    fprintf(stderr, "pipeline: 2 shards (layers 0..%u, %u..%u): %zu of %zu tokens equal the session's\n",
            cut, cut, info.n_layer, matched, want->n);
    fprintf(stderr, "pipeline: last step digests: hidden %s, logits %s\n", hex_mid, hex_out);
    rc = 0;
done:
    free(in);
    free(mid);
    free(out);
    free(logits);
    strata_shard_free(s0);
    strata_shard_free(s1);
    strata_model_free(lo);
    strata_model_free(hi);
    strata_model_free(whole);
    return rc;
#undef PTRY
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS\n", argv[0]);
        return 2;
    }
    if (strata_abi_version() != STRATA_ABI_VERSION) {
        fprintf(stderr, "generate: built for ABI %d, the library is ABI %u\n", STRATA_ABI_VERSION,
                strata_abi_version());
        return 1;
    }
    const char *path = argv[1], *prompt = argv[2];
    uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);

    strata_load_options opt = {.struct_size = sizeof opt};
    TRY(strata_load_options_default(&opt));
    opt.progress = on_progress;
    strata_model *model = NULL;
    TRY(strata_model_load(path, &opt, &model));

    strata_session *session = NULL;
    strata_status st = strata_session_new(model, NULL, &session);
    if (st != STRATA_OK) {
        strata_model_free(model);
        return fail("strata_session_new", st);
    }

    strata_sampler_params greedy = {.struct_size = sizeof greedy};
    strata_sampler_params_greedy(&greedy);
    struct tokens *got = calloc(1, sizeof *got);
    strata_generate_options gen = {.struct_size = sizeof gen};
    strata_generate_options_default(&gen);
    gen.max_tokens = n;
    gen.sampler = &greedy;
    gen.on_token = on_token;
    gen.user_data = got;
    strata_completion done = {.struct_size = sizeof done};

    fputs(prompt, stdout);
    st = strata_generate(session, prompt, strlen(prompt), &gen, &done);
    fputs("\n", stdout);
    fflush(stdout);
    strata_session_free(session);
    strata_model_free(model);
    if (st != STRATA_OK) {
        free(got);
        return fail("strata_generate", st);
    }
    fprintf(stderr, "generated %llu tokens after %llu prompt tokens (stop reason %u)\n",
            (unsigned long long)done.n_tokens, (unsigned long long)done.n_prompt_tokens,
            done.stop_reason);

    int rc = pipeline(path, prompt, got);
    free(got);
    return rc;
}
