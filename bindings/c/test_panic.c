/*
 * test_panic.c: a Rust panic inside an exported function reaches C as
 * STRATA_PANIC, never as an abort. strata_test_panic is a hook that only a
 * library built with the `ffi-test-panic` feature exports (it is not in
 * strata.h, so its prototype is declared here); it panics inside the same
 * boundary wrapper every export uses. After each panic the last error must
 * say what happened, the out-parameter must be untouched, and the process
 * and the library must carry on: a model loads, text tokenizes and
 * detokenizes, a session evaluates.
 *
 *   test_panic MODEL
 *
 * MODEL: a small model (`strata synth`). Run under valgrind by
 * bindings/test-all.sh (a caught panic must not leak either).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"

/* The test hook: how 0 = no panic (*out = 42); 1 = a panic with a static
 * message, 2 = with a formatted one, 3 = with a payload that is not text. */
enum strata_status strata_test_panic(int32_t how, uint32_t *out);

static int n_cases, n_failed;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        n_cases++;                                                                                 \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond);                                \
            n_failed++;                                                                            \
        }                                                                                          \
    } while (0)

static void last_error(char *buf, size_t len) {
    size_t w = 0;
    if (strata_last_error(buf, len, &w) != STRATA_OK) buf[0] = '\0';
}

/* The library still works: load, tokenize, detokenize, evaluate. */
static void still_works(const char *path) {
    strata_model *m = NULL;
    EXPECT(strata_model_load(path, NULL, &m) == STRATA_OK);
    if (!m) return;
    uint32_t ids[64];
    size_t n = 0;
    EXPECT(strata_tokenize(m, "hello world", 11, 0, ids, 64, &n) == STRATA_OK && n > 0);
    char text[128];
    size_t len = 0;
    EXPECT(strata_detokenize(m, ids, n, 0, text, sizeof text, &len) == STRATA_OK &&
           strcmp(text, "hello world") == 0);
    strata_session *s = NULL;
    EXPECT(strata_session_new(m, NULL, &s) == STRATA_OK);
    EXPECT(strata_session_feed(s, ids, n) == STRATA_OK);
    size_t pos = 0;
    EXPECT(strata_session_position(s, &pos) == STRATA_OK && pos == n);
    strata_session_free(s);
    strata_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    char msg[512];

    /* The hook itself works when it does not panic. */
    uint32_t out = 7;
    EXPECT(strata_test_panic(0, &out) == STRATA_OK && out == 42);
    EXPECT(strata_test_panic(0, NULL) == STRATA_NULL_POINTER);

    struct {
        int how;
        const char *says; /* part of the message the last error must hold */
    } panics[] = {
        {1, "strata_test_panic: a static message"},
        {2, "a formatted message, how = 2"},
        {3, "a panic with a non-text payload"},
    };
    for (size_t k = 0; k < sizeof panics / sizeof panics[0]; k++) {
        out = 7;
        strata_status st = strata_test_panic(panics[k].how, &out);
        EXPECT(st == STRATA_PANIC);
        EXPECT(strcmp(strata_status_name(st), "STRATA_PANIC") == 0);
        EXPECT(out == 7); /* out-parameters are written only on success */
        last_error(msg, sizeof msg);
        EXPECT(strstr(msg, "panic") != NULL);
        EXPECT(strstr(msg, panics[k].says) != NULL);
        if (n_failed) fprintf(stderr, "  how %d: last error: %s\n", panics[k].how, msg);
        still_works(path);
        /* Successful calls leave the last error as it was. */
        last_error(msg, sizeof msg);
        EXPECT(strstr(msg, panics[k].says) != NULL);
    }

    /* The next failure replaces the panic's message as usual. */
    strata_model *m = NULL;
    EXPECT(strata_model_load("/nonexistent/model.gguf", NULL, &m) == STRATA_IO && m == NULL);
    last_error(msg, sizeof msg);
    EXPECT(strstr(msg, "/nonexistent/model.gguf") != NULL && strstr(msg, "panic") == NULL);

    printf("panic: %d passed, %d failed\n", n_cases - n_failed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
