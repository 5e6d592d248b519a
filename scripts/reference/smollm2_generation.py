#!/usr/bin/env python3
"""Reference logits and greedy continuations for the decoder parity test.

Loads SmolLM2-135M-Instruct from the project's GGUF (Q4_1) with transformers,
which dequantises every weight to f32, renders 5 chat prompts with the model's
own chat template, and records for each: the prompt token ids, the top-20
next-token logits after the prompt, and a greedy 32-token continuation (with the
top-20 logits at every step). Output: crates/mdsa-models/tests/fixtures/
smollm2_reference.json. CI never runs this; it reads the committed output.

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install transformers torch gguf accelerate
    /tmp/refenv/bin/python scripts/reference/smollm2_generation.py [GGUF_PATH]

The default GGUF path is the Hugging Face cache entry `cargo xtask fetch-models`
creates.
"""

import glob
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "I have a fever and a headache. What should I do?",
    "How do I reverse a list in Python?",
    "Explain compound interest in one sentence.",
]
STEPS = 32
TOP = 20


def default_gguf() -> str:
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    pattern = os.path.join(home, "models--QuantFactory--SmolLM2-135M-Instruct-GGUF",
                           "snapshots", "*", "SmolLM2-135M-Instruct.Q4_1.gguf")
    found = glob.glob(pattern)
    if not found:
        sys.exit(f"no GGUF at {pattern}: run `cargo xtask fetch-models`")
    return found[0]


def top(logits: torch.Tensor):
    values, ids = torch.topk(logits.float(), TOP)
    return {"ids": ids.tolist(), "logits": [float(v) for v in values]}


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else default_gguf()
    folder, name = os.path.dirname(path), os.path.basename(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    torch.set_grad_enabled(False)
    cases = []
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = list(ids)
        steps = []
        for _ in range(STEPS):
            logits = model(torch.tensor([tokens])).logits[0, -1]
            steps.append(top(logits))
            tokens.append(int(torch.argmax(logits)))
        cases.append({
            "prompt": prompt,
            "rendered": text,
            "prompt_ids": ids,
            "greedy_ids": tokens[len(ids):],
            "greedy_text": tokenizer.decode(tokens[len(ids):]),
            "steps": steps,
        })
    out = {
        "generator": "scripts/reference/smollm2_generation.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gguf": name,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "mdsa-models", "tests",
                        "fixtures", "smollm2_reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
