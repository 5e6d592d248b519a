#!/usr/bin/env bash
# Reference ("anchor") server for the batched-serving benchmark: llama.cpp's
# llama-server, built from the llama.cpp vendored in the llama-cpp-python
# 0.3.36 sdist (vendor/llama.cpp, commit 0c1e570; reports "b1-0c1e570").
#
# Usage: llama_server.sh <model.gguf> [port=8799] [extra llama-server args...]
#   env: LLAMA_SERVER (the binary; default: llama-server on PATH)
#        CTX (total KV context, default 8192 = 8 slots x 1024 tokens)
#
# scripts/reference/install.sh builds the binary (CPU only, from the sdist's
# vendor/llama.cpp, with cmake and ninja from PyPI, ~9 minutes on 2 cores) into
# the reference venv's bin/, where `cargo xtask bench --compare` finds it. The
# web UI is not built (-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF would
# otherwise download it); only the browser page at "/" lacks it.
#
# Flags: -t 2 threads; --parallel 8 slots; continuous batching is on by default
# (-cb); with an explicit --parallel the KV cache is NOT unified, so each slot
# gets CTX/8 tokens (8192/8 = 1024: room for ~512-token prompt + generation).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 <model.gguf> [port=8799] [extra llama-server args...]" >&2
    exit 2
fi
MODEL="$1"
PORT="${2:-8799}"
shift $(( $# >= 2 ? 2 : 1 ))

BIN="${LLAMA_SERVER:-llama-server}"
CTX="${CTX:-8192}"

exec "$BIN" -m "$MODEL" -t 2 --parallel 8 -c "$CTX" \
    --host 127.0.0.1 --port "$PORT" "$@"
