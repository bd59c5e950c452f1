"""/metrics: Prometheus text that parses, with the documented series, and
counters that move with the requests."""

import uuid

REQUIRED = [
    "strata_requests_running",
    "strata_requests_queued",
    "strata_prompt_tokens_total",
    "strata_generated_tokens_total",
]


def test_metrics_parse_and_have_the_series(server):
    r = server.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    m = server.metrics()
    for name in REQUIRED:
        assert name in m, f"{name} missing from /metrics: {sorted(m)}"
    assert m["strata_requests_running"] >= 0
    assert m["strata_requests_queued"] >= 0
    # Every sample has TYPE metadata.
    types = [l for l in r.text.splitlines() if l.startswith("# TYPE ")]
    typed = {l.split()[2] for l in types}
    for name in REQUIRED:
        assert name in typed, f"no # TYPE line for {name}"


def test_counters_move_with_a_request(server, client, model):
    before = server.metrics()
    # A prompt no earlier test sent.
    prompt = f"Tell me about the number {uuid.uuid4().int % 10**9}."
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=7, temperature=0
    )
    after = server.metrics()
    assert r.usage.completion_tokens == 7
    gen = after["strata_generated_tokens_total"] - before["strata_generated_tokens_total"]
    prompt_tokens = after["strata_prompt_tokens_total"] - before["strata_prompt_tokens_total"]
    assert gen == 7, (before, after)
    # The counter counts cached prompt tokens too (its # HELP says so).
    assert prompt_tokens == r.usage.prompt_tokens, (prompt_tokens, r.usage)
    if "strata_requests_total" in before:
        assert after["strata_requests_total"] - before["strata_requests_total"] == 1
    assert after["strata_requests_running"] == 0
    assert after["strata_requests_queued"] == 0
    for name, value in before.items():
        if name.endswith("_total") and name in after:
            assert after[name] >= value, f"counter {name} went down"
