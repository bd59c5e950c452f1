"""A client that goes away mid-stream frees its slot (server with one slot:
if the abandoned request kept decoding, the next one would wait for it)."""

import time

import httpx

COUNT = "1, 2, 3, 4, 5, 6, 7, 8,"
LONG_TOKENS = 3000  # tens of seconds of decoding if it were not cancelled


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_abandoned_stream_frees_the_slot(one_slot_server):
    s = one_slot_server
    model = s.model_id()
    body = {"model": model, "prompt": COUNT, "max_tokens": LONG_TOKENS, "temperature": 0, "stream": True}
    with httpx.Client(base_url=s.base_url, timeout=60) as h:
        with h.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data:"):
                    seen += 1
                    if seen == 5:
                        break
            assert seen == 5
            assert s.metrics()["strata_requests_running"] == 1
        # Leaving the block closes the connection.
    assert wait_for(lambda: s.metrics()["strata_requests_running"] == 0, 10), s.metrics()

    start = time.monotonic()
    r = s.client(timeout=30).completions.create(model=model, prompt=COUNT, max_tokens=8, temperature=0)
    elapsed = time.monotonic() - start
    assert r.usage.completion_tokens == 8
    assert elapsed < 10, f"the next request took {elapsed:.1f} s: the abandoned one still ran"
    m = s.metrics()
    assert m["strata_requests_running"] == 0
    assert m["strata_requests_queued"] == 0


def test_abandoned_non_streamed_request_frees_the_slot(one_slot_server):
    s = one_slot_server
    model = s.model_id()
    body = {"model": model, "prompt": COUNT, "max_tokens": LONG_TOKENS, "temperature": 0}
    # The client gives up after a second; the server notices when it tries
    # to answer or sees the connection close.
    try:
        httpx.post(s.base_url + "/v1/completions", json=body, timeout=1.0)
    except httpx.TimeoutException:
        pass
    assert wait_for(lambda: s.metrics()["strata_requests_running"] == 0, 15), s.metrics()
    r = s.client(timeout=30).completions.create(model=model, prompt=COUNT, max_tokens=8, temperature=0)
    assert r.usage.completion_tokens == 8
