"""logprobs / top_logprobs on chat completions."""

import math

PROMPT = [{"role": "user", "content": "List the days of the week."}]


def test_top_logprobs_three_per_token(client, model):
    r = client.chat.completions.create(
        model=model, messages=PROMPT, temperature=0, max_tokens=10, logprobs=True, top_logprobs=3
    )
    choice = r.choices[0]
    assert choice.finish_reason == "length"
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens == 10
    assert "".join(t.token for t in content) == choice.message.content
    for t in content:
        assert isinstance(t.token, str)
        assert t.logprob <= 0 and math.isfinite(t.logprob)
        alts = t.top_logprobs
        assert len(alts) == 3
        lps = [a.logprob for a in alts]
        assert lps == sorted(lps, reverse=True), lps
        assert all(lp <= 0 for lp in lps)
        assert len({a.token for a in alts}) == 3
        # Greedy: the chosen token is the best alternative.
        assert alts[0].token == t.token
        assert abs(alts[0].logprob - t.logprob) < 1e-4
        # Probabilities of distinct tokens sum to at most 1.
        assert sum(math.exp(lp) for lp in lps) <= 1 + 1e-4
        if t.bytes is not None:
            assert bytes(t.bytes).decode("utf-8", errors="replace")


def test_sampled_token_logprob_is_at_most_the_best(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        temperature=1.0,
        seed=3,
        max_tokens=12,
        logprobs=True,
        top_logprobs=2,
    )
    for t in r.choices[0].logprobs.content:
        assert t.logprob <= 0
        assert t.logprob <= t.top_logprobs[0].logprob + 1e-5
        assert len(t.top_logprobs) == 2


def test_logprobs_without_alternatives(client, model):
    r = client.chat.completions.create(
        model=model, messages=PROMPT, temperature=0, max_tokens=6, logprobs=True
    )
    content = r.choices[0].logprobs.content
    assert len(content) == 6
    for t in content:
        assert t.logprob <= 0
        assert not t.top_logprobs


def test_no_logprobs_unless_asked(client, model):
    r = client.chat.completions.create(model=model, messages=PROMPT, temperature=0, max_tokens=6)
    assert r.choices[0].logprobs is None


def test_logprobs_streamed(client, model):
    kw = dict(model=model, messages=PROMPT, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    whole = client.chat.completions.create(**kw).choices[0].logprobs.content
    streamed = []
    for ch in client.chat.completions.create(stream=True, **kw):
        if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            streamed.extend(ch.choices[0].logprobs.content)
    assert [t.token for t in streamed] == [t.token for t in whole]
    assert [t.logprob for t in streamed] == [t.logprob for t in whole]
