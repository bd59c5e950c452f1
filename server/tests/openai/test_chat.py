"""Chat completions, not streamed: the response's shape, usage, max_tokens."""

import pytest

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def chat(client, model, **kw):
    kw.setdefault("messages", STORY)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=model, **kw)


def test_models_lists_the_loaded_model(server):
    r = server.http.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert len(body["data"]) >= 1
    entry = body["data"][0]
    assert entry["object"] == "model"
    assert isinstance(entry["id"], str) and entry["id"]


def test_models_through_the_client(client, model):
    ids = [m.id for m in client.models.list()]
    assert model in ids


def test_chat_completion_shape_and_usage(client, model):
    r = chat(client, model, max_tokens=24)
    assert r.object == "chat.completion"
    assert r.id
    assert r.model
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    u = r.usage
    assert u.prompt_tokens > 0
    assert 0 < u.completion_tokens <= 24
    assert u.prompt_tokens + u.completion_tokens == u.total_tokens


def test_finish_reason_length_when_max_tokens_is_hit(client, model):
    r = chat(client, model, max_tokens=8)
    assert r.choices[0].finish_reason == "length", r
    assert r.usage.completion_tokens == 8


def test_max_completion_tokens_is_max_tokens(client, model):
    a = chat(client, model, max_tokens=8)
    b = chat(client, model, max_completion_tokens=8)
    assert b.choices[0].finish_reason == "length"
    assert b.usage.completion_tokens == 8
    assert a.choices[0].message.content == b.choices[0].message.content


def test_finish_reason_stop_at_end_of_generation(client, model):
    # A question with a one-word answer: the model ends its turn long
    # before 200 tokens.
    r = chat(
        client,
        model,
        messages=[{"role": "user", "content": "What is the capital of France? Answer with one word."}],
        max_tokens=200,
    )
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.completion_tokens < 200
    assert r.choices[0].message.content.strip()


def test_system_and_multi_turn_messages(client, model):
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Name another."},
    ]
    one = chat(client, model, messages=messages[-1:], max_tokens=8)
    many = chat(client, model, messages=messages, max_tokens=8)
    assert many.choices[0].message.content
    # The earlier turns are part of the prompt.
    assert many.usage.prompt_tokens > one.usage.prompt_tokens


def test_greedy_is_deterministic(client, model):
    texts = {chat(client, model, max_tokens=24).choices[0].message.content for _ in range(3)}
    assert len(texts) == 1, texts


@pytest.mark.parametrize("content", ["", "  "])
def test_empty_user_message_is_answered(client, model, content):
    # The chat template still makes a prompt of several tokens.
    r = chat(client, model, messages=[{"role": "user", "content": content}], max_tokens=4)
    assert r.usage.prompt_tokens > 0
    assert r.choices[0].finish_reason in ("stop", "length")


def test_content_as_text_parts_equals_string_content(client, model):
    text = "Name three fruits."
    plain = chat(client, model, messages=[{"role": "user", "content": text}], max_tokens=12)
    parts = chat(
        client,
        model,
        messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
        max_tokens=12,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
