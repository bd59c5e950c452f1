"""response_format: json_object output parses; json_schema output validates
against its schema (constrained decoding, so even a 135M model obeys)."""

import json

import jsonschema

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


def test_json_object_parses(client, model):
    r = client.chat.completions.create(
        model=model,
        # SmolLM2 closes this object; on open-ended prompts it repeats keys
        # until max_tokens (still JSON so far, but never finished).
        messages=[
            {
                "role": "user",
                "content": 'Return a JSON object with the key "answer" set to the capital of France.',
            }
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", (r.choices[0].finish_reason, text)
    value = json.loads(text)
    assert isinstance(value, dict)


def test_json_schema_validates(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give me a person with a name, an age and a city."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        temperature=0,
        max_tokens=200,
    )
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", (r.choices[0].finish_reason, text)
    jsonschema.validate(json.loads(text), PERSON)


def test_json_schema_sampled_still_validates(client, model):
    for seed in range(3):
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "A person, please."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            temperature=1.0,
            seed=seed,
            max_tokens=200,
        )
        text = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop", (seed, text)
        jsonschema.validate(json.loads(text), PERSON)


def test_json_schema_streamed_equals_not_streamed(client, model):
    kw = dict(
        model=model,
        messages=[{"role": "user", "content": "Give me a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        temperature=0,
        max_tokens=200,
    )
    whole = client.chat.completions.create(**kw).choices[0].message.content
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(stream=True, **kw)
        if ch.choices
    )
    assert streamed == whole
    jsonschema.validate(json.loads(streamed), PERSON)

