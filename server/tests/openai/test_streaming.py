"""Streamed chat completions: the chunks OpenAI's clients expect, and the
same text and usage as the same request not streamed."""

import json

PROMPT = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]
SEEDED = dict(temperature=0.8, top_p=0.95, seed=1234, max_tokens=32)


def test_stream_chunks_and_text_equal_the_non_streamed_request(client, model):
    whole = client.chat.completions.create(model=model, messages=PROMPT, **SEEDED)
    chunks = list(
        client.chat.completions.create(model=model, messages=PROMPT, stream=True, **SEEDED)
    )
    assert len(chunks) >= 2
    for ch in chunks:
        assert ch.object == "chat.completion.chunk"
        assert ch.id == chunks[0].id
    with_choices = [ch for ch in chunks if ch.choices]
    first = with_choices[0].choices[0]
    assert first.delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in with_choices)
    assert text == whole.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in with_choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert finishes[-1] in ("stop", "length")
    assert all(f is None for f in finishes[:-1]), finishes
    # Without stream_options no chunk carries usage.
    assert all(getattr(ch, "usage", None) is None for ch in chunks)


def test_stream_usage_chunk_with_include_usage(client, model):
    whole = client.chat.completions.create(model=model, messages=PROMPT, **SEEDED)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=PROMPT,
            stream=True,
            stream_options={"include_usage": True},
            **SEEDED,
        )
    )
    with_usage = [i for i, ch in enumerate(chunks) if ch.usage is not None]
    assert with_usage == [len(chunks) - 1], "exactly one usage chunk, the last"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == whole.usage.total_tokens
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content


def test_stream_wire_format(server, model):
    """Raw server-sent events: `data: {json}` lines, `data: [DONE]` last."""
    body = {"model": model, "messages": PROMPT, "stream": True, "max_tokens": 8, "temperature": 0}
    with server.http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data:"):].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert events and all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_streamed_greedy_equals_non_streamed_greedy(client, model):
    kw = dict(model=model, messages=PROMPT, temperature=0, max_tokens=24)
    whole = client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(stream=True, **kw)
        if ch.choices
    )
    assert streamed == whole
