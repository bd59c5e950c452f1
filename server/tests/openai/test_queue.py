"""The queue limit (--parallel 1 --max-queue 1): with one request running
and one waiting, more are refused with 429 and Retry-After; the admitted
ones complete."""

import threading
import time

import httpx

from helpers import assert_error_shape

COUNT = "1, 2, 3, 4, 5, 6, 7, 8,"


def test_queue_full_is_429_with_retry_after(queue_server):
    s = queue_server
    model = s.model_id()
    n = 5
    responses = [None] * n
    barrier = threading.Barrier(n)

    def fire(i):
        body = {"model": model, "prompt": COUNT, "max_tokens": 200, "temperature": 0}
        barrier.wait(timeout=30)
        try:
            responses[i] = httpx.post(s.base_url + "/v1/completions", json=body, timeout=120)
        except Exception as e:  # kept for the assertion message
            responses[i] = e

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert all(isinstance(r, httpx.Response) for r in responses), responses

    codes = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    served = [r for r in responses if r.status_code == 200]
    assert len(refused) >= 1, codes
    assert len(served) >= 1, codes
    assert len(refused) + len(served) == n, codes
    for r in refused:
        assert_error_shape(r, 429)
        assert "retry-after" in r.headers, dict(r.headers)
        assert int(r.headers["retry-after"]) >= 0
    for r in served:
        body = r.json()
        assert body["usage"]["completion_tokens"] == 200
        assert body["choices"][0]["finish_reason"] == "length"
    texts = {r.json()["choices"][0]["text"] for r in served}
    assert len(texts) == 1


def test_queue_frees_after_the_burst(queue_server):
    s = queue_server
    r = s.client().completions.create(model=s.model_id(), prompt=COUNT, max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    m = s.metrics()
    assert m["strata_requests_running"] == 0
    assert m["strata_requests_queued"] == 0


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_third_request_refused_while_one_runs_and_one_waits(queue_server):
    """Checked through /metrics step by step: a stream holds the slot, a
    second request waits in the queue, and a third (streamed) one gets the
    429 as its HTTP status, not as an error inside a 200 stream."""
    s = queue_server
    model = s.model_id()
    long_body = {"model": model, "prompt": COUNT, "max_tokens": 800, "temperature": 0, "stream": True}
    waiting = {}

    def second():
        body = {"model": model, "prompt": COUNT, "max_tokens": 4, "temperature": 0}
        waiting["r"] = httpx.post(s.base_url + "/v1/completions", json=body, timeout=120)

    with httpx.Client(base_url=s.base_url, timeout=60) as a:
        with a.stream("POST", "/v1/completions", json=long_body) as running:
            assert running.status_code == 200
            lines = running.iter_lines()
            next(l for l in lines if l.startswith("data:"))
            t = threading.Thread(target=second)
            t.start()
            assert wait_for(lambda: s.metrics()["strata_requests_queued"] == 1, 10), s.metrics()
            with httpx.Client(base_url=s.base_url, timeout=30) as c:
                with c.stream("POST", "/v1/completions", json=long_body) as third:
                    third.read()
                    assert_error_shape(third, 429)
                    assert "retry-after" in third.headers
        # The running stream is closed: the waiting request gets the slot.
        t.join(timeout=60)
    assert waiting["r"].status_code == 200, waiting["r"].text
    assert waiting["r"].json()["usage"]["completion_tokens"] == 4
