// Tests of strata.hpp: RAII ownership, exceptions with the C status,
// callbacks (including one that throws), a two-shard pipeline.
//
//   test MODEL OTHER_MODEL   (two synthetic models of 3 layers, different seeds)
#include "strata.hpp"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

static int n_pass, n_fail;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_pass++;                                                                              \
        } else {                                                                                   \
            n_fail++;                                                                              \
            std::cerr << "FAIL line " << __LINE__ << ": " #cond "\n";                              \
        }                                                                                          \
    } while (0)

template <class F> static strata_status throws(F &&f) {
    try {
        f();
    } catch (const strata::Error &e) {
        return e.status();
    }
    return STRATA_OK;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: test MODEL OTHER_MODEL\n";
        return 2;
    }
    const std::string path = argv[1], other = argv[2];

    // Loading, progress, cancel, errors.
    std::vector<strata_load_stage> stages;
    strata::Model model(path, strata::LoadOptions().threads(2).progress([&](strata_load_stage s, float) {
        stages.push_back(s);
        return true;
    }));
    EXPECT(stages.size() == 4 && stages.back() == STRATA_LOAD_DONE);
    EXPECT(throws([&] { strata::Model m(path, strata::LoadOptions().progress([](auto, auto) { return false; })); }) ==
           STRATA_CANCELLED);
    EXPECT(throws([&] { strata::Model m("/nonexistent.gguf"); }) == STRATA_IO);
    EXPECT(throws([&] { strata::Model m(path, strata::LoadOptions().layers(0, 99)); }) == STRATA_INVALID_ARGUMENT);
    bool rethrown = false;
    try {
        strata::Model m(path, strata::LoadOptions().progress([](auto, auto) -> bool { throw std::logic_error("mine"); }));
    } catch (const std::logic_error &e) {
        rethrown = std::strcmp(e.what(), "mine") == 0;
    }
    EXPECT(rethrown);

    auto info = model.info();
    EXPECT(info.n_layer == 3 && info.n_embd == 64 && (info.flags & STRATA_MODEL_GIVES_LOGITS));
    EXPECT(model.architecture() == "llama");
    EXPECT(model.meta("llama.block_count") == "3");
    EXPECT(throws([&] { model.meta("nope"); }) == STRATA_NOT_FOUND);
    auto ids = model.tokenize("hello world", 0);
    EXPECT(model.detokenize(ids) == "hello world");

    // Sessions and generation.
    strata::Session session(model);
    std::vector<uint32_t> got;
    std::string text;
    auto opts = strata::GenerateOptions().max_tokens(6).sampler(strata::SamplerParams::greedy()).flags(0);
    auto done = session.generate("hello", [&](uint32_t t, std::string_view s) {
        got.push_back(t);
        text += s;
        return true;
    }, opts);
    EXPECT(done.n_tokens == got.size() && got.size() <= 6);
    session.reset();
    std::vector<uint32_t> again;
    session.generate("hello", [&](uint32_t t, std::string_view) {
        again.push_back(t);
        return again.size() < 2;
    }, opts);
    EXPECT(again.size() == 2 && again[0] == got[0] && again[1] == got[1]);
    bool from_callback = false;
    try {
        session.generate("hello", [](uint32_t, std::string_view) -> bool { throw std::runtime_error("cb"); }, opts);
    } catch (const std::runtime_error &e) {
        from_callback = std::string(e.what()) == "cb";
    }
    EXPECT(from_callback);
    EXPECT(throws([&] { session.feed({}); }) == STRATA_EMPTY_INPUT);
    EXPECT(throws([&] { session.feed({info.n_vocab}); }) == STRATA_TOKEN_OUT_OF_RANGE);
    session.reset();
    session.feed(ids);
    auto logits = session.logits();
    EXPECT(logits.size() == info.n_vocab);
    strata::Sampler greedy(strata::SamplerParams::greedy());
    EXPECT(greedy.sample(logits) == greedy.sample(session));
    EXPECT(throws([] { strata::Sampler s(strata::SamplerParams().top_p(3.0f)); }) == STRATA_INVALID_ARGUMENT);

    // Ownership: moved-from handles are empty and freeing them is a no-op.
    strata::Session moved = std::move(session);
    EXPECT(moved.position() == ids.size());

    // Two shards equal the whole model.
    strata::Model lo(path, strata::LoadOptions().layers(0, 2)), hi(path, strata::LoadOptions().layers(2, 3));
    strata::Shard s0(lo), s1(hi);
    auto frame = strata::encode_tokens(s0.digest(), 1, 0, ids);
    auto mid = s0.forward(frame);
    EXPECT(strata::decode(mid).kind == STRATA_FRAME_HIDDEN && strata::decode(mid).boundary == 2);
    auto out = s1.forward(mid);
    EXPECT(strata::values(out) == logits);
    EXPECT(strata::payload_digest(s1.forward(mid)) == strata::payload_digest(out));
    strata::Model wrong(other);
    EXPECT(throws([&] { s0.forward(strata::encode_tokens(wrong.digest(), 1, 0, ids)); }) == STRATA_FRAME_WRONG_MODEL);
    auto corrupt = frame;
    corrupt[corrupt.size() - 1] ^= 1;
    EXPECT(throws([&] { s0.forward(corrupt); }) == STRATA_FRAME_CHECKSUM);
    EXPECT(s0.position(1) == ids.size());

    std::printf("cpp: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
