// strata.hpp: a header-only C++17 RAII wrapper over the Strata C interface
// (strata.h). Handles are move-only owners that free themselves; failures
// throw strata::Error (status + the library's message); callbacks take any
// callable, and an exception thrown by one is carried across the C call
// and rethrown (it never unwinds through the library).
//
//   strata::Model model("model.gguf");
//   strata::Session session(model);
//   session.generate("The capital of France is",
//                    [](uint32_t, std::string_view text) { std::cout << text; return true; },
//                    strata::GenerateOptions().max_tokens(16).sampler(strata::SamplerParams::greedy()));
//
// Thread safety is the C interface's: Model and Shard may be shared between
// threads; a Session or Sampler is used by one thread at a time.
#ifndef STRATA_HPP
#define STRATA_HPP

#include <array>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata.h"

namespace strata {

/// A failed call: the C status and the library's message.
class Error : public std::runtime_error {
public:
    Error(strata_status status, const std::string &message)
        : std::runtime_error(std::string(strata_status_name(status)) + ": " + message), status_(status) {}
    strata_status status() const noexcept { return status_; }

private:
    strata_status status_;
};

namespace detail {

inline std::string last_error() {
    std::string s(strata_last_error_length() + 1, '\0');
    size_t n = 0;
    strata_last_error(s.data(), s.size(), &n);
    s.resize(n);
    return s;
}

inline void check(strata_status st) {
    if (st != STRATA_OK) throw Error(st, last_error());
}

template <class T> T sized() {
    T v{};
    v.struct_size = sizeof(T);
    return v;
}

/// Run a copy-out call, growing the buffer once if it was too small.
template <class T, class F> std::vector<T> query(F &&call, size_t initial) {
    std::vector<T> buf(initial > 0 ? initial : 1);
    size_t n = 0;
    strata_status st = call(buf.data(), buf.size(), &n);
    if (st == STRATA_BUFFER_TOO_SMALL) {
        buf.resize(n + 1);
        st = call(buf.data(), buf.size(), &n);
    }
    check(st);
    buf.resize(n);
    return buf;
}

template <class F> std::string text(F &&call, size_t initial = 256) {
    auto v = query<char>(std::forward<F>(call), initial);
    return std::string(v.begin(), v.end());
}

struct ModelFree { void operator()(strata_model *p) const noexcept { strata_model_free(p); } };
struct SessionFree { void operator()(strata_session *p) const noexcept { strata_session_free(p); } };
struct SamplerFree { void operator()(strata_sampler *p) const noexcept { strata_sampler_free(p); } };
struct ShardFree { void operator()(strata_shard *p) const noexcept { strata_shard_free(p); } };

}  // namespace detail

using Digest = std::array<uint8_t, STRATA_DIGEST_LEN>;

/// Sampling parameters, starting from the library's defaults.
class SamplerParams {
public:
    SamplerParams() : p_(detail::sized<strata_sampler_params>()) { detail::check(strata_sampler_params_default(&p_)); }
    static SamplerParams greedy() {
        SamplerParams s;
        detail::check(strata_sampler_params_greedy(&s.p_));
        return s;
    }
    SamplerParams &temperature(float v) { p_.temperature = v; return *this; }
    SamplerParams &top_k(uint32_t v) { p_.top_k = v; return *this; }
    SamplerParams &top_p(float v) { p_.top_p = v; return *this; }
    SamplerParams &min_p(float v) { p_.min_p = v; return *this; }
    SamplerParams &repeat_penalty(float v) { p_.repeat_penalty = v; return *this; }
    SamplerParams &seed(uint64_t v) { p_.seed = v; return *this; }
    const strata_sampler_params &c() const { return p_; }

private:
    strata_sampler_params p_;
};

/// How to load a model.
class LoadOptions {
public:
    LoadOptions() : o_(detail::sized<strata_load_options>()) { detail::check(strata_load_options_default(&o_)); }
    LoadOptions &threads(uint32_t n) { o_.n_threads = n; return *this; }
    LoadOptions &layers(uint32_t start, uint32_t end) { o_.layer_start = start; o_.layer_end = end; return *this; }
    /// progress(stage, fraction) -> bool; false cancels (Error STRATA_CANCELLED).
    LoadOptions &progress(std::function<bool(strata_load_stage, float)> f) { progress_ = std::move(f); return *this; }

private:
    friend class Model;
    strata_load_options o_;
    std::function<bool(strata_load_stage, float)> progress_;
};

class Model {
public:
    explicit Model(const std::string &path, LoadOptions opts = LoadOptions()) {
        struct Ctx {
            std::function<bool(strata_load_stage, float)> *fn;
            std::exception_ptr error;
        } ctx{&opts.progress_, nullptr};
        if (opts.progress_) {
            opts.o_.progress = [](void *ud, strata_load_stage stage, float f) -> bool {
                auto *c = static_cast<Ctx *>(ud);
                try {
                    return (*c->fn)(stage, f);
                } catch (...) {
                    c->error = std::current_exception();
                    return false;
                }
            };
            opts.o_.progress_user_data = &ctx;
        }
        strata_model *m = nullptr;
        strata_status st = strata_model_load(path.c_str(), &opts.o_, &m);
        if (ctx.error) std::rethrow_exception(ctx.error);
        detail::check(st);
        h_.reset(m);
    }

    strata_model *get() const noexcept { return h_.get(); }

    strata_model_info info() const {
        auto i = detail::sized<strata_model_info>();
        detail::check(strata_model_get_info(get(), &i));
        return i;
    }
    std::string architecture() const {
        return detail::text([&](char *b, size_t n, size_t *o) { return strata_model_architecture(get(), b, n, o); });
    }
    std::string meta(std::string_view key) const {
        return detail::text([&](char *b, size_t n, size_t *o) {
            return strata_model_meta(get(), key.data(), key.size(), b, n, o);
        });
    }
    Digest digest() const {
        Digest d{};
        detail::check(strata_model_digest(get(), d.data(), d.size()));
        return d;
    }
    std::vector<uint32_t> tokenize(std::string_view text,
                                   uint32_t flags = STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL) const {
        return detail::query<uint32_t>(
            [&](uint32_t *b, size_t n, size_t *o) { return strata_tokenize(get(), text.data(), text.size(), flags, b, n, o); },
            text.size() + 8);
    }
    std::string detokenize(const std::vector<uint32_t> &ids, uint32_t flags = 0) const {
        return detail::text([&](char *b, size_t n, size_t *o) {
            return strata_detokenize(get(), ids.data(), ids.size(), flags, b, n, o);
        });
    }

private:
    std::unique_ptr<strata_model, detail::ModelFree> h_;
};

/// What to generate.
class GenerateOptions {
public:
    GenerateOptions() : o_(detail::sized<strata_generate_options>()) { detail::check(strata_generate_options_default(&o_)); }
    GenerateOptions &max_tokens(uint32_t n) { o_.max_tokens = n; return *this; }
    GenerateOptions &sampler(const SamplerParams &p) { sampler_ = p; has_sampler_ = true; return *this; }
    GenerateOptions &stop(std::string s) { stop_.push_back(std::move(s)); return *this; }
    GenerateOptions &flags(uint32_t f) { o_.flags = f; return *this; }

private:
    friend class Session;
    strata_generate_options o_;
    SamplerParams sampler_;
    bool has_sampler_ = false;
    std::vector<std::string> stop_;
};

class Session {
public:
    explicit Session(const Model &model, uint32_t n_ctx = 0) {
        auto o = detail::sized<strata_session_options>();
        o.n_ctx = n_ctx;
        strata_session *s = nullptr;
        detail::check(strata_session_new(model.get(), &o, &s));
        h_.reset(s);
    }

    strata_session *get() const noexcept { return h_.get(); }

    size_t position() const {
        size_t p = 0;
        detail::check(strata_session_position(get(), &p));
        return p;
    }
    void reset() { detail::check(strata_session_reset(get())); }
    void truncate(size_t pos) { detail::check(strata_session_truncate(get(), pos)); }
    void feed(const std::vector<uint32_t> &tokens) { detail::check(strata_session_feed(get(), tokens.data(), tokens.size())); }
    std::vector<float> logits() const {
        return detail::query<float>([&](float *b, size_t n, size_t *o) { return strata_session_logits(get(), b, n, o); }, 1);
    }

    /// Generate, calling on_token(id, text) for each token (false stops).
    template <class F> strata_completion generate(std::string_view prompt, F &&on_token, GenerateOptions opts = GenerateOptions()) {
        struct Ctx {
            F *fn;
            std::exception_ptr error;
        } ctx{&on_token, nullptr};
        std::vector<strata_str> stops;
        for (const auto &s : opts.stop_) stops.push_back({s.data(), s.size()});
        opts.o_.stop = stops.empty() ? nullptr : stops.data();
        opts.o_.n_stop = stops.size();
        opts.o_.sampler = opts.has_sampler_ ? &opts.sampler_.c() : nullptr;
        opts.o_.on_token = [](void *ud, uint32_t token, const char *text, size_t len) -> bool {
            auto *c = static_cast<Ctx *>(ud);
            try {
                return (*c->fn)(token, std::string_view(text, len));
            } catch (...) {
                c->error = std::current_exception();
                return false;
            }
        };
        opts.o_.user_data = &ctx;
        auto done = detail::sized<strata_completion>();
        strata_status st = strata_generate(get(), prompt.data(), prompt.size(), &opts.o_, &done);
        if (ctx.error) std::rethrow_exception(ctx.error);
        detail::check(st);
        return done;
    }

private:
    std::unique_ptr<strata_session, detail::SessionFree> h_;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams &p = SamplerParams()) {
        strata_sampler *s = nullptr;
        detail::check(strata_sampler_new(&p.c(), &s));
        h_.reset(s);
    }
    uint32_t sample(const std::vector<float> &logits) {
        uint32_t t = 0;
        detail::check(strata_sampler_sample(h_.get(), logits.data(), logits.size(), &t));
        return t;
    }
    uint32_t sample(const Session &s) {
        uint32_t t = 0;
        detail::check(strata_sampler_sample_session(h_.get(), s.get(), &t));
        return t;
    }

private:
    std::unique_ptr<strata_sampler, detail::SamplerFree> h_;
};

using Frame = std::vector<uint8_t>;

class Shard {
public:
    explicit Shard(const Model &model, uint32_t max_sessions = 64, uint32_t n_ctx = 4096) {
        auto l = detail::sized<strata_shard_limits>();
        detail::check(strata_shard_limits_default(&l));
        l.max_sessions = max_sessions;
        l.n_ctx = n_ctx;
        strata_shard *s = nullptr;
        detail::check(strata_shard_new(model.get(), &l, &s));
        h_.reset(s);
    }
    Digest digest() const {
        Digest d{};
        detail::check(strata_shard_digest(h_.get(), d.data(), d.size()));
        return d;
    }
    Frame forward(const Frame &in) const {
        size_t n = 0;
        detail::check(strata_shard_output_len(h_.get(), in.data(), in.size(), &n));
        Frame out(n);
        detail::check(strata_shard_forward(h_.get(), in.data(), in.size(), out.data(), out.size(), &n));
        out.resize(n);
        return out;
    }
    uint64_t position(uint64_t session) const {
        uint64_t p = 0;
        detail::check(strata_shard_position(h_.get(), session, &p));
        return p;
    }

private:
    std::unique_ptr<strata_shard, detail::ShardFree> h_;
};

inline Frame encode_tokens(const Digest &model, uint64_t session, uint64_t position, const std::vector<uint32_t> &ids) {
    return detail::query<uint8_t>(
        [&](uint8_t *b, size_t n, size_t *o) {
            return strata_frame_encode_tokens(model.data(), model.size(), session, position, ids.data(), ids.size(), b, n, o);
        },
        STRATA_FRAME_HEADER_LEN + 4 * ids.size() + STRATA_FRAME_CHECKSUM_LEN);
}

inline strata_frame_info decode(const Frame &f) {
    auto i = detail::sized<strata_frame_info>();
    detail::check(strata_frame_decode(f.data(), f.size(), &i));
    return i;
}

inline std::vector<float> values(const Frame &f) {
    return detail::query<float>([&](float *b, size_t n, size_t *o) { return strata_frame_values(f.data(), f.size(), b, n, o); },
                                f.size() / 2);
}

inline Digest payload_digest(const Frame &f) {
    Digest d{};
    detail::check(strata_frame_payload_digest(f.data(), f.size(), d.data(), d.size()));
    return d;
}

}  // namespace strata

#endif  // STRATA_HPP
