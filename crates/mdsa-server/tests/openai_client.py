"""Drives `mdsa serve` with the official OpenAI Python client, unchanged.

Run by tests/openai_client.rs with the server's base URL as the only
argument; exits non-zero (an AssertionError or the client's own exception)
when the server does not behave as OpenAI's API does.
"""

import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)

# Models: the router, the domains and the generators.
ids = [m.id for m in client.models.list()]
assert "auto" in ids and "finance" in ids and "smollm2" in ids, ids

# A routed answer, not streamed.
completion = client.chat.completions.create(
    model="auto",
    messages=[{"role": "user", "content": "What is compound interest?"}],
    max_tokens=12,
)
choice = completion.choices[0]
assert choice.message.role == "assistant"
assert choice.message.content and choice.message.content.strip(), completion
assert choice.finish_reason in ("stop", "length"), choice.finish_reason
assert completion.usage.completion_tokens >= 1, completion.usage
assert completion.model == "smollm2", completion.model
# The route decision rides along as an extra field.
extra = completion.model_extra["mdsa"]
assert extra["domain"] == "finance", extra

# Streamed, with usage in the last chunk.
pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model="medical",
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What helps with a headache?"},
    ],
    max_tokens=10,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert len(pieces) >= 2, pieces
assert finish in ("stop", "length"), finish
assert usage is not None and usage.completion_tokens >= 1, usage

# Embeddings from the router's encoder.
embeddings = client.embeddings.create(model="minilm", input=["a cat", "a kitten"])
assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 384

# Errors arrive as the client's own exceptions.
try:
    client.chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": "hi"}]
    )
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as error:
    assert error.body["code"] == "model_not_found", error.body
try:
    client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        temperature=5,
    )
    raise AssertionError("temperature 5 must fail")
except openai.BadRequestError as error:
    assert error.body["param"] == "temperature", error.body

print("openai client: models, chat, stream, embeddings and errors all as expected")
