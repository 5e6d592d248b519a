#!/usr/bin/env python3
"""llama.cpp on the same GGUF and prompt as crates/mdsa-models/benches/decoder.rs.

Prints load time, prefill tokens/s and decode tokens/s (median of 5 runs) so the
decoder bench can be reported as a ratio on the same machine in the same session.

Install llama-cpp-python into a throwaway venv (it compiles llama.cpp, ~15 min on
2 cores; AMX must be off on CPUs whose AMX llama.cpp mis-detects):

    python3 -m venv /tmp/llamaenv
    CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' \
      -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'" \
      /tmp/llamaenv/bin/pip install llama-cpp-python
    /tmp/llamaenv/bin/python scripts/reference/llamacpp_bench.py
"""

import glob
import os
import statistics
import sys
import time

from llama_cpp import Llama

PROMPT = "What is the capital of France?"
DECODE = 64


def default_gguf() -> str:
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    found = glob.glob(os.path.join(home, "models--QuantFactory--SmolLM2-135M-Instruct-GGUF",
                                   "snapshots", "*", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not found:
        sys.exit("no GGUF in the cache: run `cargo xtask fetch-models`")
    return found[0]


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else default_gguf()
    threads = os.cpu_count()
    start = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, verbose=False)
    load = time.perf_counter() - start
    # The model's own chat template with its default system prompt, as mdsa renders it.
    text = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
            f"Hugging Face<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
    prefill, decode = [], []
    for _ in range(5):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for i in range(DECODE):
            llm.eval([tokens[5 + i % 10]])
        t2 = time.perf_counter()
        prefill.append(len(tokens) / (t1 - t0))
        decode.append(DECODE / (t2 - t1))
    print(f"llama.cpp threads {threads}, load {load:.3f} s")
    print(f"llama.cpp prefill {statistics.median(prefill):.1f} tokens/s ({len(tokens)} tokens)")
    print(f"llama.cpp decode {statistics.median(decode):.1f} tokens/s")


if __name__ == "__main__":
    main()
