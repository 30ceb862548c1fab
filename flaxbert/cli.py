"""`flaxbert` — model utilities from the shell.

    flaxbert info MODEL_DIR
    flaxbert embed --model MODEL_DIR --input texts.txt [--output out.npy] [--pooling mean]
    flaxbert convert SRC DST --to {hf,orbax} [--config PRESET_OR_JSON]
    flaxbert vocab train --input vader:DIR --out DIR [--kind sentencepiece --vocab-size 8000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _info(args) -> None:
    from flaxbert.params import count_params, flatten
    from flaxbert.pretrained import from_pretrained

    model, params, _ = from_pretrained(args.model, tokenizer=False)
    cfg = model.config
    total = count_params(params)
    embeddings = sum(int(np.prod(v.shape)) for k, v in flatten(params).items()
                     if "/embeddings/" in f"/{k}")
    print(f"family            {cfg.model_type}")
    print(f"layers            {cfg.num_hidden_layers}")
    print(f"hidden            {cfg.hidden_size}")
    print(f"heads             {cfg.num_attention_heads}")
    print(f"intermediate      {cfg.intermediate_size}")
    print(f"vocab             {cfg.vocab_size}")
    print(f"model heads       {', '.join(model.heads) or '(none)'}")
    print(f"parameters        {total:,} ({total - embeddings:,} without embeddings)")


def embed_texts(model, params, tokenizer, texts, pooling="mean", batch_size=64, seq_length=128,
                progress=True) -> np.ndarray:
    """[N, H] float32 sentence embeddings in input order. Texts are sorted by length and padded
    to a few bucket lengths, so only a handful of shapes compile."""
    import jax
    from tqdm.auto import tqdm

    from distill.data.buckets import pad_batch
    from distill.losses import mean_pool
    from flaxbert.tokenization import Preprocessor

    if pooling not in ("mean", "pooled", "cls"):
        raise ValueError(f"pooling={pooling!r}; expected mean, pooled or cls")
    features = Preprocessor(tokenizer, seq_length=seq_length)(list(texts))
    order = np.argsort(features["input_mask"].sum(1), kind="stable")

    @jax.jit
    def forward(p, batch):
        out = model.apply({"params": p}, batch["input_word_ids"], batch["input_mask"],
                          batch["input_type_ids"])
        if pooling == "mean":
            return mean_pool(out["sequence_output"], batch["input_mask"])
        return out["pooled_output"] if pooling == "pooled" else out["sequence_output"][:, 0]

    buckets = tuple(b for b in (16, 32, 64, 128, 256, 512) if b < seq_length) + (seq_length,)
    result = np.zeros((len(order), model.config.hidden_size), np.float32)
    for start in tqdm(range(0, len(order), batch_size), disable=not progress, unit="batch"):
        idx = order[start:start + batch_size]
        batch = pad_batch({k: v[idx] for k, v in features.items()}, buckets=buckets)
        result[idx] = np.asarray(forward(params, batch), np.float32)
    return result


def _embed(args) -> None:
    from flaxbert.pretrained import from_pretrained

    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    texts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    if not any(t.strip() for t in texts):
        raise ValueError(f"input file {path} has no text (expected one text per line)")
    model, params, tokenizer = from_pretrained(args.model, heads=())
    vectors = embed_texts(model, params, tokenizer, texts, args.pooling, args.batch_size,
                          args.seq_length)
    output = Path(args.output or path.with_suffix(".npy"))
    np.save(output, vectors)
    print(f"wrote {vectors.shape[0]} × {vectors.shape[1]} {args.pooling} embeddings to {output}")


def _convert(args) -> None:
    from flaxbert.checkpoints.convert import convert

    convert(args.src, args.dst, to=args.to, config=args.config)
    print(f"converted {args.src} → {args.dst} ({args.to})")


def _vocab_train(args) -> None:
    from distill.data.sources import read_documents
    from flaxbert.tokenization import train_sentencepiece, train_wordpiece

    sentences = [s for doc in read_documents(args.input) for s in doc]
    if args.kind == "wordpiece":
        tok = train_wordpiece(sentences, args.vocab_size, args.out, lowercase=not args.cased)
    else:
        tok = train_sentencepiece(sentences, args.vocab_size, args.out, model_type=args.model_type,
                                  lowercase=not args.cased)
    print(f"trained a {args.kind} vocabulary of {tok.vocab_size} tokens on {len(sentences)} "
          f"sentences into {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flaxbert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="config and parameter count of a model folder")
    info.add_argument("model")
    info.set_defaults(run=_info)
    embed = sub.add_parser("embed", help="sentence embeddings of a text file (one per line)")
    embed.add_argument("--model", required=True)
    embed.add_argument("--input", required=True)
    embed.add_argument("--output")
    embed.add_argument("--pooling", default="mean", choices=("mean", "pooled", "cls"))
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--seq-length", type=int, default=128)
    embed.set_defaults(run=_embed)
    conv = sub.add_parser("convert", help="convert a checkpoint folder (HF, Google TF, TF Hub)")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--to", choices=("hf", "orbax"), default="hf")
    conv.add_argument("--config", help="preset name or config JSON (TF Hub v1 modules need it)")
    conv.set_defaults(run=_convert)
    vocab = sub.add_parser("vocab", help="vocabularies").add_subparsers(dest="action", required=True)
    train = vocab.add_parser("train", help="train a WordPiece vocab or a SentencePiece model")
    train.add_argument("--input", required=True,
                       help="a text source spec: text:PATH, jsonl:PATH, vader:PATH, tfds:NAME")
    train.add_argument("--out", required=True)
    train.add_argument("--kind", choices=("wordpiece", "sentencepiece"), default="wordpiece")
    train.add_argument("--vocab-size", type=int, default=30522)
    train.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    train.add_argument("--cased", action="store_true")
    train.set_defaults(run=_vocab_train)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"flaxbert {args.command}: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
