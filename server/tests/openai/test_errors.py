"""Bad requests get OpenAI-shaped errors ({"error": {"message", "type"}})
with the right status, and leave the server serving."""

import openai
import pytest

from helpers import assert_error_shape

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Hello"}]


def chat_body(model, **kw):
    body = {"model": model, "messages": MESSAGES, "max_tokens": 4}
    body.update(kw)
    return body


def post_raw(server, path, content, content_type="application/json"):
    return server.http.post(path, content=content, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "m", "messages": [',
        b"not json at all",
        bytes(range(256)),
        b"",
        b"[]",
        b"null",
        b'"a string"',
    ],
    ids=["truncated", "text", "binary", "empty", "array", "null", "string"],
)
@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
def test_malformed_body_is_400(server, path, content):
    assert_error_shape(post_raw(server, path, content), 400)


BAD_CHAT_PARAMS = {
    "temperature_string": {"temperature": "hot"},
    "temperature_negative": {"temperature": -0.5},
    "top_p_above_one": {"top_p": 1.5},
    "max_tokens_negative": {"max_tokens": -5},
    "max_tokens_string": {"max_tokens": "many"},
    "seed_string": {"seed": "abc"},
    "stop_number": {"stop": 7},
    "top_logprobs_too_many": {"logprobs": True, "top_logprobs": 21},
    "response_format_unknown": {"response_format": {"type": "xml"}},
    "json_schema_invalid": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}
    },
    "messages_missing": {"messages": None},
    "messages_empty": {"messages": []},
    "messages_not_a_list": {"messages": "Hello"},
    "message_without_role": {"messages": [{"content": "Hello"}]},
    "message_unknown_role": {"messages": [{"role": "wizard", "content": "Hello"}]},
    "message_content_number": {"messages": [{"role": "user", "content": 42}]},
}


@pytest.mark.parametrize("params", list(BAD_CHAT_PARAMS.values()), ids=list(BAD_CHAT_PARAMS))
def test_bad_chat_parameters_are_400(server, model, params):
    body = chat_body(model, **params)
    body = {k: v for k, v in body.items() if v is not None}
    assert_error_shape(server.http.post(CHAT, json=body), 400)


def test_model_missing_is_refused_or_the_loaded_one(server, model):
    # OpenAI requires `model`; a one-model server may take its absence to
    # mean the model it serves. Either answer is fine, nothing else is.
    r = server.http.post(CHAT, json={"messages": MESSAGES, "max_tokens": 4})
    if r.status_code == 200:
        assert r.json()["model"] == model, r.text
    else:
        assert_error_shape(r, 400)


@pytest.mark.parametrize(
    "params",
    [{"prompt": None}, {"prompt": {"text": "x"}}, {"temperature": "hot"}, {"max_tokens": -1}],
    ids=["prompt_missing", "prompt_object", "temperature_string", "max_tokens_negative"],
)
def test_bad_completion_parameters_are_400(server, model, params):
    body = {"model": model, "prompt": "Hello", "max_tokens": 4}
    body.update(params)
    body = {k: v for k, v in body.items() if v is not None}
    assert_error_shape(server.http.post("/v1/completions", json=body), 400)


def test_n_two_is_refused_or_served(server, model):
    r = server.http.post(CHAT, json=chat_body(model, n=2))
    if r.status_code == 200:
        assert len(r.json()["choices"]) == 2, r.text
    else:
        assert_error_shape(r, 400)


def test_n_one_is_fine(server, model):
    r = server.http.post(CHAT, json=chat_body(model, n=1))
    assert r.status_code == 200, r.text


def test_unknown_fields_are_ignored(server, model):
    r = server.http.post(
        CHAT,
        json=chat_body(
            model,
            temperature=0,
            frobnicate=True,
            user="someone",
            metadata={"k": "v"},
            store=False,
            parallel_tool_calls=False,
            **{"x-nested": {"a": [1, 2, 3]}},
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
def test_unknown_model_is_404(server, path):
    body = {"model": "no-such-model-xyz", "max_tokens": 4}
    body.update({"messages": MESSAGES} if path == CHAT else {"prompt": "Hi"})
    err = assert_error_shape(server.http.post(path, json=body), 404)
    assert "no-such-model-xyz" in err["message"]


def test_unknown_path_is_404(server):
    assert server.http.get("/v1/nothing-here").status_code == 404


def test_client_raises_typed_errors(client, model):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=MESSAGES, temperature=-1)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model-xyz", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=MESSAGES, stream=True, top_p=7)


def test_still_serving_after_the_bad_requests(server, client, model):
    r = server.http.get("/health")
    assert r.status_code == 200, r.text
    out = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4, temperature=0)
    assert out.choices[0].message.content
    assert server.proc.poll() is None
