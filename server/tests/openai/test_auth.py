"""--api-key: the /v1 endpoints want `Authorization: Bearer KEY`; /health
stays open."""

import openai
import pytest

from helpers import API_KEY, assert_error_shape

MESSAGES = [{"role": "user", "content": "Hello"}]


def test_no_key_is_401(auth_server):
    s = auth_server
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", {"model": "x", "messages": MESSAGES}),
        ("POST", "/v1/completions", {"model": "x", "prompt": "Hi"}),
    ]:
        r = s.http.request(method, path, json=body)
        assert_error_shape(r, 401)


def test_wrong_key_is_401(auth_server):
    s = auth_server
    for header in ["Bearer wrong", f"Bearer {API_KEY}x", API_KEY, f"Basic {API_KEY}"]:
        r = s.http.get("/v1/models", headers={"Authorization": header})
        assert_error_shape(r, 401)


def test_wrong_key_through_the_client(auth_server):
    client = auth_server.client(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=2)


def test_right_key_is_200(auth_server):
    client = auth_server.client(api_key=API_KEY)
    model = client.models.list().data[0].id
    r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4, temperature=0)
    assert r.choices[0].message.content
    chunks = list(
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4, stream=True)
    )
    assert chunks


def test_auth_is_checked_before_the_body(auth_server):
    # Garbage without a key is 401, not 400: nothing is parsed for strangers.
    r = auth_server.http.post(
        "/v1/chat/completions", content=b"\x00\x01garbage", headers={"Content-Type": "application/json"}
    )
    assert_error_shape(r, 401)


def test_health_is_open(auth_server):
    r = auth_server.http.get("/health")
    assert r.status_code == 200, r.text
