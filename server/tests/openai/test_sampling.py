"""Sampling: a seed makes temperature sampling reproducible; different seeds
give different texts; temperature 0 is greedy."""

PROMPT = [{"role": "user", "content": "Invent a name for a new planet and describe it."}]


def sample(client, model, **kw):
    kw.setdefault("max_tokens", 24)
    return client.chat.completions.create(model=model, messages=PROMPT, **kw).choices[0].message.content


def test_same_seed_same_text(client, model):
    a = sample(client, model, temperature=0.8, seed=42)
    b = sample(client, model, temperature=0.8, seed=42)
    assert a == b


def test_different_seeds_differ(client, model):
    texts = [sample(client, model, temperature=0.8, seed=s) for s in range(1, 7)]
    assert len(set(texts)) > 1, texts


def test_temperature_zero_ignores_the_seed(client, model):
    a = sample(client, model, temperature=0, seed=1)
    b = sample(client, model, temperature=0, seed=2)
    c = sample(client, model, temperature=0)
    assert a == b == c


def test_top_p_tiny_is_greedy(client, model):
    # top_p so small that only the most likely token is left.
    greedy = sample(client, model, temperature=0)
    nucleus = sample(client, model, temperature=1.0, top_p=1e-6, seed=5)
    assert nucleus == greedy


def test_seeded_sampling_differs_from_greedy(client, model):
    greedy = sample(client, model, temperature=0)
    hot = [sample(client, model, temperature=1.2, seed=s) for s in range(3)]
    assert any(h != greedy for h in hot), hot
