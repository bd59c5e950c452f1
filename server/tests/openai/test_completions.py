"""Text completions (/v1/completions): the prompt is continued as is."""

COUNT = "1, 2, 3, 4, 5, 6, 7, 8,"


def complete(client, model, **kw):
    kw.setdefault("prompt", COUNT)
    kw.setdefault("temperature", 0)
    return client.completions.create(model=model, **kw)


def test_completion_shape_and_usage(client, model):
    r = complete(client, model, max_tokens=12)
    assert r.object == "text_completion"
    assert r.id
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert isinstance(c.text, str) and c.text.strip()
    assert c.finish_reason == "length"
    u = r.usage
    assert u.completion_tokens == 12
    assert u.prompt_tokens > 0
    assert u.prompt_tokens + u.completion_tokens == u.total_tokens


def test_completion_continues_the_prompt(client, model):
    # Greedy SmolLM2 counts on; the prompt itself is not echoed.
    r = complete(client, model, max_tokens=12)
    text = r.choices[0].text
    assert "9" in text, text
    assert not text.startswith(COUNT)


def test_completion_is_not_the_chat_template(client, model):
    # The same text as a chat message gets the template's extra tokens.
    comp = complete(client, model, max_tokens=4)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": COUNT}], max_tokens=4, temperature=0
    )
    assert chat.usage.prompt_tokens > comp.usage.prompt_tokens


def test_completion_streamed_equals_not_streamed(client, model):
    whole = complete(client, model, max_tokens=16)
    chunks = list(complete(client, model, max_tokens=16, stream=True))
    assert chunks, "no chunks"
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == whole.choices[0].text
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "length"
    assert all(f is None for f in finishes[:-1]), finishes


def test_completion_seeded_sampling_is_reproducible(client, model):
    a = complete(client, model, prompt="Once upon a time", max_tokens=16, temperature=0.8, seed=11)
    b = complete(client, model, prompt="Once upon a time", max_tokens=16, temperature=0.8, seed=11)
    assert a.choices[0].text == b.choices[0].text
