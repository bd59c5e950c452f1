"""Stop strings: the text ends before the first stop string, finish_reason
is "stop". The stop string is taken from the greedy output itself, so it is
known to occur."""

import pytest

PROMPT = [{"role": "user", "content": "Describe the sea in a few sentences."}]


def greedy(client, model, **kw):
    return client.chat.completions.create(
        model=model, messages=PROMPT, temperature=0, max_tokens=48, **kw
    )


@pytest.fixture(scope="module")
def reference(client, model):
    text = greedy(client, model).choices[0].message.content
    words = text.split()
    assert len(words) >= 6, f"the reference answer is too short to cut: {text!r}"
    return text, words


def test_stop_string_ends_the_text(client, model, reference):
    text, words = reference
    stop = words[4]
    r = greedy(client, model, stop=[stop])
    out = r.choices[0].message.content
    assert stop not in out
    assert out == text[: text.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_stop_as_a_plain_string(client, model, reference):
    text, words = reference
    stop = " " + words[3]
    r = greedy(client, model, stop=stop)
    assert r.choices[0].message.content == text[: text.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_first_of_several_stop_strings_wins(client, model, reference):
    text, words = reference
    stops = [words[5], words[2]]
    r = greedy(client, model, stop=stops)
    cut = min(text.index(s) for s in stops)
    assert r.choices[0].message.content == text[:cut]


def test_stop_string_while_streaming(client, model, reference):
    text, words = reference
    stop = words[4]
    chunks = list(greedy(client, model, stop=[stop], stream=True))
    out = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert out == text[: text.index(stop)]
    assert stop not in out
    assert [ch for ch in chunks if ch.choices][-1].choices[0].finish_reason == "stop"


def test_stop_string_that_never_occurs(client, model, reference):
    text, _ = reference
    r = greedy(client, model, stop=["\u2603\u2603never"])
    assert r.choices[0].message.content == text
