#!/usr/bin/env bash
# Wheels for an offline GPU machine whose Python lacks some of our dependencies (seen: a Python 3.12 image with
# torch, torchvision, timm, scipy, scikit-image, matplotlib and tqdm, but no pycocotools, pydensecrf or fastcore).
# Run here (with PyPI access), then carry .whl/ to the GPU machine; benchmarks/gpu_check.sh installs it first.
#   bash benchmarks/gpu_wheels.sh [python-version, default 3.12]
set -eu
PYV=${1:-3.12}; TAG=cp${PYV/./}
mkdir -p .whl
python3 -m pip download -q --only-binary=:all: --no-deps --python-version "$PYV" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl "pycocotools>=2.0.7"
python3 -m pip download -q --only-binary=:all: --no-deps -d .whl "fastcore<2"
# GroupViT half: transformers and CLIP's tokenizer (compiled parts for the target Python, the rest pure Python)
python3 -m pip download -q --only-binary=:all: --no-deps --python-version "$PYV" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
  "tokenizers>=0.22" "safetensors>=0.4" "regex" "hf-xet"
python3 -m pip download -q --only-binary=:all: --no-deps -d .whl "transformers>=5,<6" "open_clip_torch>=2.24,<4" \
  "huggingface_hub>=1" ftfy wcwidth "nltk>=3.8" joblib click
# pydensecrf2 has no binary wheels: build one with an interpreter of the target version (pyenv here)
PY=$(ls ~/.pyenv/versions/"$PYV".*/bin/python 2>/dev/null | head -1 || true)
if [ -z "$PY" ] && "python$PYV" -c "" 2>/dev/null; then PY=python$PYV; fi
if [ -z "$PY" ]; then echo "no python$PYV here to build pydensecrf2 for $TAG; build it on a machine that has one" >&2; exit 1; fi
"$PY" -m pip wheel -q --no-deps -w .whl pydensecrf2==1.1
ls -l .whl
