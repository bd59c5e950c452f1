"""Batch invariance over HTTP: 8 streams at once give, token for token, what
each request gives alone."""

import threading

PROMPTS = [
    "What is the boiling point of water?",
    "Write a haiku about autumn leaves.",
    "Explain what a prime number is.",
    "List three animals that live in the ocean.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "Who wrote Romeo and Juliet?",
    "Translate 'good morning' into French and Spanish.",
]


def stream_text(server, model, prompt, max_tokens, **kw):
    client = server.client()
    try:
        chunks = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **kw,
        )
        text, finish, usage = "", None, None
        for ch in chunks:
            if ch.choices:
                text += ch.choices[0].delta.content or ""
                finish = ch.choices[0].finish_reason or finish
            if ch.usage is not None:
                usage = (ch.usage.prompt_tokens, ch.usage.completion_tokens)
        return text, finish, usage
    finally:
        client.close()


def run_all(server, model, jobs):
    """jobs: [(prompt, max_tokens, kwargs)] all started together."""
    results = [None] * len(jobs)
    errors = []
    barrier = threading.Barrier(len(jobs))

    def work(i, prompt, n, kw):
        try:
            barrier.wait(timeout=30)
            results[i] = stream_text(server, model, prompt, n, **kw)
        except Exception as e:  # reported below with the request's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a stream did not finish"
    assert not errors, errors
    return results


def check(server, model, jobs):
    alone = [stream_text(server, model, p, n, **kw) for p, n, kw in jobs]
    together = run_all(server, model, jobs)
    for i, (a, t) in enumerate(zip(alone, together)):
        assert a[0], f"request {i} produced no text"
        assert t == a, f"request {i} ({jobs[i][0]!r}) differs when run with others:\nalone:    {a}\ntogether: {t}"


def test_eight_greedy_streams_equal_each_alone(server, model):
    jobs = [(p, 16 + 4 * i, {"temperature": 0}) for i, p in enumerate(PROMPTS)]
    check(server, model, jobs)


def test_eight_seeded_streams_equal_each_alone(server, model):
    jobs = [(p, 24, {"temperature": 0.9, "seed": 100 + i}) for i, p in enumerate(PROMPTS)]
    check(server, model, jobs)


def test_same_prompt_eight_times_at_once(server, model):
    jobs = [(PROMPTS[0], 24, {"temperature": 0})] * 8
    together = run_all(server, model, jobs)
    assert len(set(together)) == 1, together
