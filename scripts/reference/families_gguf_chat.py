#!/usr/bin/env python3
"""The chat prompt of each family fixture as llama.cpp tokenizes it, and
transformers' greedy answer to exactly those ids.

llama.cpp's SentencePiece tokenizer puts a space after every special token
(`<s>[INST]` becomes `<s> ▁[INST]`), where transformers' does not, so a GGUF
model's chat prompt is not transformers' ids. mdsa's GGUF tokenizer follows
llama.cpp (tests/tokenizer_parity.rs); this records, per fixture, what its
whole GGUF generator must then produce:

- `gguf_chat.ids`: llama.cpp's tokens of the rendered chat prompt (special
  tokens parsed, no BOS added by the tokenizer; BOS first when the GGUF asks
  for one and the text does not start with it, as mdsa and llama.cpp's
  server do);
- `gguf_chat.greedy`: transformers' f32 greedy continuation of those ids (16
  tokens, not stopped at end of turn), from the fixture's hf/ checkpoint.

Run after scripts/reference/families.py, with its venv (llama-cpp-python
0.3.36, transformers 5.24.0, torch 2.15.0):

    /work/refs/bin/python scripts/reference/families_gguf_chat.py
"""

import glob
import json
import os

import llama_cpp
import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAMILIES = os.path.join(ROOT, "crates", "mdsa-models", "tests", "fixtures", "families")
UNQUANTIZED = ["model.f32.gguf", "model.bf16.gguf", "model.f16.gguf"]
GREEDY_TOKENS = 16


def llama_cpp_chat_ids(gguf_path, text):
    llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    ids = [int(i) for i in llm.tokenize(text.encode(), add_bos=False, special=True)]
    bos = llm.token_bos()
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else None
    if add_bos is None:
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm._model.model)))
    if add_bos and bos >= 0 and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for ref_path in sorted(glob.glob(os.path.join(FAMILIES, "*", "reference.json"))):
        fixture = os.path.dirname(ref_path)
        gguf = next((f for f in UNQUANTIZED if os.path.exists(os.path.join(fixture, f))), None)
        if gguf is None:
            continue
        with open(ref_path) as f:
            reference = json.load(f)
        text = reference["chat_sample"]["rendered"]
        ids = llama_cpp_chat_ids(os.path.join(fixture, gguf), text)
        model = AutoModelForCausalLM.from_pretrained(
            os.path.join(fixture, "hf"), dtype=torch.float32, attn_implementation="eager"
        )
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY_TOKENS,
                do_sample=False, eos_token_id=None, pad_token_id=0,
                temperature=None, top_p=None, top_k=None,
            )
        greedy = out[0, len(ids):].tolist()
        reference["gguf_chat"] = {"file": gguf, "ids": ids, "greedy": greedy}
        with open(ref_path, "w") as f:
            json.dump(reference, f, indent=2, ensure_ascii=False)
            f.write("\n")
        same = ids == next(p["ids"] for p in reference["prompts"] if p["kind"] == "chat")
        print(f"{os.path.basename(fixture)}: {len(ids)} ids ({'same as' if same else 'differ from'} transformers'), greedy {greedy}")


if __name__ == "__main__":
    main()
