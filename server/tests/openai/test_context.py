"""The context limit (a server started with -c 256): a prompt longer than the
context is a 400 that names both numbers; max_tokens beyond the context is
clamped and ends with finish_reason "length"."""

import re

import openai
import pytest

from helpers import assert_error_shape

CTX = 256
LONG = "The quick brown fox jumps over the lazy dog. " * 60  # ~600 tokens


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_the_context_is_400(small_ctx_server, stream):
    s = small_ctx_server
    r = s.http.post(
        "/v1/chat/completions",
        json={
            "model": s.model_id(),
            "messages": [{"role": "user", "content": LONG}],
            "max_tokens": 4,
            "stream": stream,
        },
    )
    err = assert_error_shape(r, 400)
    numbers = [int(n) for n in re.findall(r"\d+", err["message"])]
    assert CTX in numbers, err["message"]
    assert any(n > CTX for n in numbers), f"the prompt's length is not in: {err['message']}"


def test_completion_prompt_longer_than_the_context_is_400(small_ctx_server):
    s = small_ctx_server
    client = s.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=s.model_id(), prompt=LONG, max_tokens=4)
    assert str(CTX) in str(e.value)


def test_max_tokens_beyond_the_context_is_clamped(small_ctx_server):
    s = small_ctx_server
    client = s.client()
    # Greedy counting goes on and on: only the context stops it.
    r = client.completions.create(
        model=s.model_id(), prompt="1, 2, 3, 4, 5,", max_tokens=1_000_000, temperature=0
    )
    assert r.choices[0].finish_reason == "length", r
    assert r.usage.total_tokens <= CTX
    assert r.usage.total_tokens >= CTX - 1, r.usage


def test_chat_max_tokens_beyond_the_context_is_answered(small_ctx_server):
    s = small_ctx_server
    r = s.client().chat.completions.create(
        model=s.model_id(),
        messages=[{"role": "user", "content": "Count from one to one thousand."}],
        max_tokens=100_000,
        temperature=0,
    )
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.total_tokens <= CTX


def test_prompt_near_the_limit_leaves_room_to_generate(small_ctx_server):
    # A prompt that fits leaves room for at least one token.
    s = small_ctx_server
    client = s.client()
    words = "one two three four five six seven eight nine ten ".split()
    prompt = " ".join(words * 20)  # about 200 tokens
    r = client.completions.create(model=s.model_id(), prompt=prompt, max_tokens=1_000, temperature=0)
    assert r.usage.prompt_tokens < CTX
    assert r.usage.total_tokens <= CTX
    assert r.usage.completion_tokens >= 1
