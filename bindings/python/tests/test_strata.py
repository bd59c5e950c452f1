import subprocess
import threading

import pytest

import strata


def test_version_matches_the_library():
    assert strata.abi_version() == 1
    assert strata.version().count(".") == 2


def test_model_info_metadata_and_digest(synth):
    with strata.Model(synth[0], n_threads=2) as m:
        info = m.info
        assert (info.n_layer, info.layer_start, info.layer_end, info.n_embd) == (3, 0, 3, 64)
        assert info.takes_tokens and info.gives_logits and not info.shard_file
        assert m.architecture == "llama"
        assert m.meta("general.architecture") == "llama"
        assert m.meta("llama.block_count") == "3"
        assert "general.architecture" in m.meta_keys()
        assert len(m.digest) == 32
        with pytest.raises(strata.Error) as e:
            m.meta("no.such.key")
        assert e.value.name == "STRATA_NOT_FOUND" and "no.such.key" in e.value.message


def test_numerics_mode_is_chosen_at_load(synth):
    with strata.Model(synth[0]) as m:
        assert not m.info.batch_invariant
    with strata.Model(synth[0], batch_invariant=True, n_threads=2) as m:
        assert m.info.batch_invariant
        whole = m.session()
        whole.feed([5, 6, 7, 8, 9, 10, 11])
        split = m.session()
        for chunk in ([5, 6, 7], [8], [9, 10, 11]):
            split.feed(chunk)
        assert split.logits() == whole.logits()  # the same bits however it is split


def test_progress_reports_every_stage_and_can_cancel(synth):
    stages = []
    strata.Model(synth[0], progress=lambda s, f: stages.append(s) is None).close()
    assert stages == [1, 2, 3, 4]
    with pytest.raises(strata.Error) as e:
        strata.Model(synth[0], progress=lambda s, f: s < 2)
    assert e.value.name == "STRATA_CANCELLED"


def test_errors_carry_status_and_message(synth, tmp_path):
    with pytest.raises(strata.Error) as e:
        strata.Model(str(tmp_path / "missing.gguf"))
    assert e.value.name == "STRATA_IO"
    with pytest.raises(strata.Error) as e:
        strata.Model(synth[0], layers=(0, 99))
    assert e.value.name == "STRATA_INVALID_ARGUMENT"
    m = strata.Model(synth[0])
    s = m.session(n_ctx=4)
    with pytest.raises(strata.Error) as e:
        s.feed([1, 2, 3, 4, 5])
    assert e.value.name == "STRATA_CONTEXT_FULL" and s.position == 0
    with pytest.raises(strata.Error) as e:
        s.feed([m.info.n_vocab])
    assert e.value.name == "STRATA_TOKEN_OUT_OF_RANGE"
    with pytest.raises(strata.Error) as e:
        s.logits()
    assert e.value.name == "STRATA_INVALID_STATE"


def test_tokenize_round_trip(synth):
    m = strata.Model(synth[0])
    ids = m.tokenize("hello world", add_special=False)
    assert m.detokenize(ids) == "hello world"
    assert b"".join(m.token_to_piece(i) for i in ids) == b"hello world"
    with pytest.raises(strata.Error):
        m.token_to_piece(10**6)


def test_feed_logits_sampler_and_rollback(synth):
    m = strata.Model(synth[0])
    s = m.session()
    s.feed([5, 6, 7])
    logits = s.logits()
    assert len(logits) == m.info.n_vocab
    greedy = strata.Sampler(strata.SamplerParams.greedy())
    best = max(range(len(logits)), key=lambda i: (logits[i], -i))
    assert greedy.sample(logits) == best
    assert greedy.sample_session(s) == best
    s.truncate(1)
    assert s.position == 1 and s.tokens == [5]
    s.feed([6, 7])
    assert s.logits() == logits  # the same positions give the same bits
    a = strata.Sampler(strata.SamplerParams(seed=3, temperature=1.0))
    b = strata.Sampler(strata.SamplerParams(seed=3, temperature=1.0))
    assert [a.sample(logits) for _ in range(20)] == [b.sample(logits) for _ in range(20)]
    with pytest.raises(strata.Error) as e:
        strata.Sampler(strata.SamplerParams(top_p=2.0))
    assert e.value.name == "STRATA_INVALID_ARGUMENT"


def test_generate_iterator_and_early_stop(synth):
    m = strata.Model(synth[0])
    s = m.session()
    greedy = strata.SamplerParams.greedy()
    it = s.generate("hi there", max_tokens=8, sampler=greedy, add_special=False)
    tokens = [t for t, _ in it]
    assert len(tokens) <= 8 and it.completion is not None
    assert it.completion.n_tokens == len(tokens)
    s.reset()
    it = s.generate("hi there", max_tokens=8, sampler=greedy, add_special=False)
    first = [next(it)[0] for _ in range(3)]
    it.close()
    assert first == tokens[:3]
    # The session is free again after the early stop.
    s.reset()
    stopped = []
    c = s.generate_with("hi there", lambda t, x: stopped.append(t) or len(stopped) < 2,
                        max_tokens=8, sampler=greedy, add_special=False)  # fmt: skip
    assert c.stop_reason == "callback" and stopped == tokens[:2]


def test_lookup_decoding_gives_plain_decodings_tokens(real_model):
    prompt = (
        "<|im_start|>user\nThe river runs past the old mill, under the stone bridge and into the"
        " lake where the children swim in summer.\n\nRepeat the text above exactly.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with strata.Model(real_model, batch_invariant=True, n_threads=2) as m, strata.Model(real_model) as d:
        runs = []
        for kw in ({}, {"lookup": 8}, {"draft": d, "draft_max": 4}):
            toks = []
            c = m.session().generate_with(prompt, lambda t, x: toks.append(t) is None, max_tokens=24,
                                          sampler=strata.SamplerParams.greedy(), **kw)  # fmt: skip
            runs.append((toks, c))
    (plain, pc), (spec, sc), (dm, dc) = runs
    assert plain == spec == dm and pc.n_drafted == 0
    assert 0 < sc.n_accepted <= sc.n_drafted
    assert 0 < dc.n_accepted <= dc.n_drafted
    with pytest.raises(strata.Error) as e:
        strata.Model(real_model).session().generate_with("hi", lambda t, x: True, lookup=65)
    assert e.value.name == "STRATA_INVALID_ARGUMENT"


def test_callback_exceptions_surface_in_python(synth):
    s = strata.Model(synth[0]).session()

    def boom(t, x):
        raise KeyError("from the callback")

    with pytest.raises(KeyError):
        s.generate_with("hi", boom, max_tokens=4)
    assert s.text("hi", max_tokens=2, sampler=strata.SamplerParams.greedy()) is not None


def test_greedy_text_equals_the_cli(real_model, cli):
    prompt, n = "The capital of France is", 12
    out = subprocess.run(
        [cli, "generate", "-m", real_model, "-p", prompt, "-n", str(n), "--temp", "0"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    with strata.Model(real_model) as m:
        text = m.session().text(prompt, max_tokens=n, sampler=strata.SamplerParams.greedy())
    assert prompt + text + "\n" == out


def test_two_shard_pipeline_equals_the_whole_model(synth):
    whole = strata.Model(synth[0])
    s = whole.session()
    prompt = whole.tokenize("abc", add_special=False)
    s.feed(prompt)
    want = s.logits()
    lo, hi = strata.Model(synth[0], layers=(0, 1)), strata.Model(synth[0], layers=(1, 3))
    with lo.shard() as s0, hi.shard() as s1:
        frame = strata.encode_tokens_frame(s0.digest, 7, 0, prompt)
        assert strata.frame_tokens(frame) == prompt
        mid = s0.forward(frame)
        info = strata.decode_frame(mid)
        assert (info.kind, info.boundary, info.width, info.n_tokens) == (strata.FRAME_HIDDEN, 1, 64, 3)
        out = s1.forward(mid)
        assert strata.frame_values(out) == want
        assert len(strata.frame_digest(out)) == 32
        # Replay: the same frame again gives the same bytes (the session is
        # rolled back to the frame's position first).
        assert s1.forward(mid) == out
        wrong = strata.encode_tokens_frame(strata.Model(synth[1]).digest, 7, 3, [1])
        with pytest.raises(strata.Error) as e:
            s0.forward(wrong)
        assert e.value.name == "STRATA_FRAME_WRONG_MODEL"
        bad = bytearray(frame)
        bad[-1] ^= 1
        with pytest.raises(strata.Error) as e:
            s0.forward(bytes(bad))
        assert e.value.name == "STRATA_FRAME_CHECKSUM"
        with pytest.raises(strata.Error) as e:
            s0.forward(frame[:50])
        assert e.value.name == "STRATA_FRAME_MALFORMED"


def test_split_files_load_as_shards(synth, tmp_path):
    paths = strata.split(synth[0], [(0, 2), (2, 3)], str(tmp_path))
    assert len(paths) == 2
    whole = strata.Model(synth[0])
    part = strata.Model(paths[1])
    assert part.info.shard_file and (part.info.layer_start, part.info.layer_end) == (2, 3)
    assert part.digest == whole.digest


def test_threads_share_a_model(synth):
    m = strata.Model(synth[0], n_threads=1)
    greedy = strata.SamplerParams.greedy()
    prompts = [f"prompt {i}" for i in range(8)]
    serial = [m.session().text(p, max_tokens=6, sampler=greedy, add_special=False) for p in prompts]
    got = [None] * len(prompts)

    def work(i):
        got[i] = m.session().text(prompts[i], max_tokens=6, sampler=greedy, add_special=False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == serial


def test_log_callback(synth):
    seen = []
    strata.set_log_callback(lambda lvl, msg: seen.append((lvl, msg)), strata.LOG_INFO)
    try:
        strata.Model(synth[0]).close()
    finally:
        strata.set_log_callback(None)
    assert any("loaded" in m for _, m in seen)
    n = len(seen)
    strata.Model(synth[0]).close()
    assert len(seen) == n


def test_scheduler_requests_from_threads_equal_a_session(synth):
    with strata.Model(synth[0], batch_invariant=True, n_threads=2) as m:
        greedy = strata.SamplerParams.greedy()
        prompts = ["hello world", "the quick brown fox", "abc"]
        want = []
        for p in prompts:
            s = m.session()
            want.append([i for i, _t in s.generate(p, max_tokens=12, sampler=greedy)])
            s.close()
        with strata.Scheduler(m, slots=2) as sched:
            assert sched.options["slots"] == 2 and sched.options["max_queue"] == 64
            reqs = [sched.submit(m.tokenize(p), max_tokens=12, sampler=greedy) for p in prompts]
            got = [None] * len(reqs)

            def run(k):
                got[k] = reqs[k].wait()

            threads = [threading.Thread(target=run, args=(k,)) for k in range(len(reqs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for k, (tokens, text, end) in enumerate(got):
                assert tokens == want[k]
                assert text == m.detokenize(tokens)
                assert end.completion_tokens == len(tokens)
                assert end.prompt_tokens == len(m.tokenize(prompts[k]))
                assert end.finish_reason in ("max_tokens", "eog")
                with pytest.raises(strata.Error) as e:  # forgotten after its end
                    sched.poll(reqs[k].id, 0)
                assert e.value.name == "STRATA_NOT_FOUND"
            st = sched.stats()
            assert st["requests_total"] == 3 and st["running"] == 0 and st["ttft_count"] == 3


def test_scheduler_logprobs_refusals_timeout_and_cancel(synth):
    with strata.Model(synth[0], n_threads=2) as m:
        with strata.Scheduler(m, slots=1, max_queue=1, n_ctx=4096) as sched:
            r = sched.submit([256, 40, 41], max_tokens=3, logprobs=True, top_logprobs=2,
                             sampler=strata.SamplerParams.greedy())  # fmt: skip
            evs = list(r)
            assert len(evs) == 3 and all(len(e.top) == 2 and e.top[0][0] == e.token for e in evs)
            assert all(e.logprob <= 0 for e in evs)
            with pytest.raises(strata.Error) as e:
                sched.submit([])
            assert e.value.name == "STRATA_EMPTY_INPUT"
            with pytest.raises(strata.Error) as e:
                sched.submit([1, 100000])
            assert e.value.name == "STRATA_TOKEN_OUT_OF_RANGE"
            with pytest.raises(strata.Error) as e:
                sched.submit([1], logprobs=True, top_logprobs=21)
            assert e.value.name == "STRATA_INVALID_ARGUMENT"
            a = sched.submit([256, 40], max_tokens=4000, ignore_eos=True)
            b = sched.submit([256, 41], max_tokens=4000, ignore_eos=True)
            with pytest.raises(strata.Error) as e:
                sched.submit([256, 42])
            assert e.value.name == "STRATA_QUEUE_FULL"
            assert sched.poll(b.id, 0) is None  # waiting behind a
            b.cancel()
            a.cancel()
            list(a)
            assert list(b) == [] and b.end.finish_reason == "cancelled"
            assert a.end.finish_reason == "cancelled" and a.end.completion_tokens < 4000
            with pytest.raises(strata.Error) as e:
                sched.cancel(a.id)
            assert e.value.name == "STRATA_NOT_FOUND"
        with pytest.raises(strata.Error) as e:
            strata.Scheduler(m, slots=8, max_batch_tokens=4)
        assert e.value.name == "STRATA_INVALID_ARGUMENT"
