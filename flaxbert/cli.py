"""`flaxbert` — model utilities from the shell.

    flaxbert info MODEL_DIR
    flaxbert embed --model MODEL_DIR --input texts.txt [--output out.npy] [--pooling mean]
    flaxbert convert SRC DST --to {hf,orbax} [--config PRESET_OR_JSON]
    flaxbert demo --model MODEL_DIR --data VADER_DIR [--sentences 2000]

Errors in what is passed in (a missing folder or file, an empty input, a bad option value) are
printed as one line naming the command, and the exit status is non-zero. MODEL_DIR and SRC may
also be a Hugging Face hub id (`org/name[@revision]`) in the local hub cache (flaxbert/hub.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from flaxbert import hub

POOLINGS = ("mean", "pooled", "cls")
#: The sequence lengths a batch is padded to (then `seq_length` itself): few shapes, few compiles.
BUCKETS = (16, 32, 64, 128, 256, 512)


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


class Embedder:
    """Sentence embeddings with one jitted forward per padded shape.

        >>> embedder = Embedder(model, params, tokenizer, pooling="mean")
        >>> embedder(["a sentence", "another one"]).shape
        (2, 384)

    Texts are sorted by token length, cut into batches of `batch_size` rows (the last one padded
    with empty rows) and each batch is padded only to the smallest of `BUCKETS` (or `seq_length`)
    that holds it, so at most a handful of shapes compile; the rows come back in input order.
    `shapes` records the [rows, length] shapes compiled so far.
    """

    def __init__(self, model, params, tokenizer, pooling: str = "mean", batch_size: int = 64,
                 seq_length: int = 128):
        import jax

        from flaxbert.heads import mean_pool
        from flaxbert.tokenization import Preprocessor

        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}; expected one of {', '.join(POOLINGS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected a positive number of texts")
        max_len = model.config.max_position_embeddings
        if not 2 <= seq_length <= max_len:
            raise ValueError(f"seq_length={seq_length}; expected 2..{max_len} (the model's "
                             f"max_position_embeddings)")
        if pooling == "pooled" and not model.pooler:
            raise ValueError("pooling='pooled' but this model has no pooler weights; "
                             "use mean or cls")
        self.model, self.params, self.pooling = model, params, pooling
        self.batch_size, self.seq_length = batch_size, seq_length
        self.preprocess = Preprocessor(tokenizer, seq_length=seq_length)
        self.buckets = tuple(b for b in BUCKETS if b < seq_length) + (seq_length,)
        self.shapes: set[tuple[int, int]] = set()

        def forward(p, batch):
            self.shapes.add(batch["input_word_ids"].shape)  # runs once per traced shape
            out = model.apply({"params": p}, batch["input_word_ids"], batch["input_mask"],
                              batch["input_type_ids"])
            if pooling == "mean":
                return mean_pool(out["sequence_output"], batch["input_mask"])
            if pooling == "pooled":
                return out["pooled_output"]
            return out["sequence_output"][:, 0]

        self._forward = jax.jit(forward)

    def __call__(self, texts, progress: bool = False) -> np.ndarray:
        """[N, H] float32 embeddings of `texts`, row i for texts[i]."""
        from tqdm.auto import tqdm

        from flaxbert.buckets import pad_batch

        texts = [texts] if isinstance(texts, str) else list(texts)
        hidden = self.model.config.hidden_size
        if not texts:
            return np.zeros((0, hidden), np.float32)
        features = self.preprocess(texts)
        order = np.argsort(features["input_mask"].sum(1), kind="stable")
        rows = min(self.batch_size, len(texts))
        result = np.zeros((len(texts), hidden), np.float32)
        for start in tqdm(range(0, len(order), rows), disable=not progress, unit="batch",
                          desc="embed"):
            idx = order[start:start + rows]
            batch = pad_batch({k: v[idx] for k, v in features.items()}, buckets=self.buckets)
            if len(idx) < rows:  # keep the batch dimension fixed: pad with empty rows
                batch = {k: np.pad(v, ((0, rows - len(idx)), (0, 0))) for k, v in batch.items()}
            result[idx] = np.asarray(self._forward(self.params, batch), np.float32)[:len(idx)]
        return result


def embed_texts(model, params, tokenizer, texts, pooling="mean", batch_size=64, seq_length=128,
                progress=True) -> np.ndarray:
    """[N, H] float32 sentence embeddings in input order (see `Embedder`)."""
    return Embedder(model, params, tokenizer, pooling, batch_size, seq_length)(texts, progress)


def read_lines(path: str | Path) -> list[str]:
    """One text per line of a UTF-8 file; errors name the file when it is missing or empty, and
    the file and line when it is not UTF-8."""
    from flaxbert.textfiles import read_utf8

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    texts = read_utf8(path, "input file").splitlines()
    if not any(t.strip() for t in texts):
        raise ValueError(f"input file {path} has no text (expected one text per line)")
    return texts


def _embed(args) -> None:
    from flaxbert.pretrained import from_pretrained

    texts = read_lines(args.input)
    output = Path(args.output or Path(args.input).with_suffix(".npy"))
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist")
    model, params, tokenizer = from_pretrained(args.model, heads=())
    vectors = embed_texts(model, params, tokenizer, texts, args.pooling, args.batch_size,
                          args.seq_length)
    np.save(output, vectors)
    print(f"wrote {vectors.shape[0]} × {vectors.shape[1]} {args.pooling} embeddings to {output}")


def _convert(args) -> None:
    from flaxbert.checkpoints.convert import convert

    src = hub.resolve(args.src)
    if not src.exists() and not Path(f"{src}.index").exists():
        raise FileNotFoundError(f"model folder {args.src} does not exist")
    convert(src, args.dst, to=args.to, config=args.config)
    print(f"converted {args.src} → {args.dst} ({args.to})")


# --- demo -------------------------------------------------------------------------------------

VADER_MOVIES = "movieReviewSnippets_GroundTruth.txt"
#: Fixed queries for the demo, none of them in the corpus.
DEMO_QUERIES = (
    "A gripping thriller with superb performances.",
    "The plot is dull and utterly predictable.",
    "A laugh-out-loud comedy the whole family will enjoy.",
    "Gorgeous visual effects cannot save the thin story.",
    "A moving portrait of grief and friendship.",
)


def read_vader_sentences(data_dir: str | Path, limit: int | None = None) -> list[str]:
    """The texts of VADER's movie snippets (TSV `id<TAB>rating<TAB>text`), in file order."""
    path = Path(data_dir) / VADER_MOVIES
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist (expected the VADER "
                                f"folder holding {VADER_MOVIES})")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected VADER's {VADER_MOVIES})")
    texts = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) >= 3 and parts[2].strip():
            texts.append("\t".join(parts[2:]).strip())
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise ValueError(f"{path} has no rows of the form id<TAB>rating<TAB>text")
    return texts


def demo_neighbours(model, params, tokenizer, corpus, queries=DEMO_QUERIES, k: int = 3,
                    batch_size: int = 64, seq_length: int = 128, progress: bool = False):
    """For each query, its `k` nearest corpus sentences by cosine similarity of mean-pooled
    embeddings: `[(query, [(score, sentence), ...]), ...]`, best first."""
    if not corpus:
        raise ValueError("demo_neighbours: the corpus is empty")
    if k < 1:
        raise ValueError(f"demo_neighbours: k={k}; expected a positive number of neighbours")
    embedder = Embedder(model, params, tokenizer, "mean", batch_size, seq_length)
    vectors = embedder(list(corpus) + list(queries), progress=progress)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    docs, qs = vectors[:len(corpus)], vectors[len(corpus):]
    scores = qs @ docs.T
    k = min(k, len(corpus))
    result = []
    for query, row in zip(queries, scores):
        top = np.argsort(-row, kind="stable")[:k]
        result.append((query, [(float(row[i]), corpus[i]) for i in top]))
    return result


def _demo(args) -> None:
    from flaxbert.pretrained import from_pretrained

    start = time.perf_counter()
    corpus = read_vader_sentences(args.data, limit=args.sentences)
    model, params, tokenizer = from_pretrained(args.model, heads=())
    loaded = time.perf_counter()
    neighbours = demo_neighbours(model, params, tokenizer, corpus, k=args.k,
                                 batch_size=args.batch_size, progress=True)
    done = time.perf_counter()
    print(f"{len(corpus)} movie-review sentences, mean-pooled {model.config.hidden_size}-d "
          f"embeddings from {args.model}")
    for query, hits in neighbours:
        print(f"\nquery: {query}")
        for score, sentence in hits:
            print(f"  {score:.3f}  {sentence}")
    print(f"\nwall time {done - start:.1f}s (load {loaded - start:.1f}s, embed + search "
          f"{done - loaded:.1f}s)")


#: One example per command, shown by `flaxbert COMMAND --help`.
EXAMPLES = {
    "info": "flaxbert info ~/.cache/flaxbert/assets/all-MiniLM-L6-v2",
    "embed": "flaxbert embed --model ~/.cache/flaxbert/assets/all-MiniLM-L6-v2 --input texts.txt "
             "--output texts.npy",
    "convert": "flaxbert convert uncased_L-2_H-128_A-2 bert_tiny_hf --to hf",
    "demo": "flaxbert demo --model ~/.cache/flaxbert/assets/all-MiniLM-L6-v2 "
            "--data ~/.cache/flaxbert/assets/vader",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flaxbert", description=__doc__.split("\n")[0],
                                     epilog="examples:\n" + "\n".join(
                                         f"  {e}" for e in EXAMPLES.values()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """Shows each option's default (options without one: nothing added)."""

        def _get_help_string(self, action):
            text = action.help or ""
            if action.default not in (None, argparse.SUPPRESS, False) and action.option_strings:
                text += f" (default: {action.default})"
            return text

    def command(parent, name: str, help: str, example: str):
        return parent.add_parser(name, help=help, description=help, formatter_class=Formatter,
                                 epilog=f"example:\n  {EXAMPLES[example]}")

    info = command(sub, "info", "config and parameter count of a model folder", "info")
    info.add_argument("model", help="a model folder (HF layout, Google TF checkpoint, ...) or "
                      "a cached hub id org/name")
    info.set_defaults(run=_info)
    embed = command(sub, "embed", "sentence embeddings of a text file (one per line)", "embed")
    embed.add_argument("--model", required=True,
                       help="a model folder from_pretrained reads, or a cached hub id")
    embed.add_argument("--input", required=True, help="a UTF-8 text file, one text per line")
    embed.add_argument("--output", help="the .npy to write (default: INPUT with .npy)")
    embed.add_argument("--pooling", default="mean", choices=POOLINGS,
                       help="mean over real tokens (sentence-transformers), the pooler, or [CLS]")
    embed.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    embed.add_argument("--seq-length", type=int, default=128, help="longest tokenised text kept")
    embed.set_defaults(run=_embed)
    conv = command(sub, "convert", "convert a checkpoint folder (HF, Google TF, TF Hub)", "convert")
    conv.add_argument("src", help="the checkpoint folder (or TF checkpoint prefix) to read")
    conv.add_argument("dst", help="the folder to write")
    conv.add_argument("--to", choices=("hf", "orbax"), default="hf", help="the output format")
    conv.add_argument("--config", help="preset name or config JSON (TF Hub v1 modules need it)")
    conv.set_defaults(run=_convert)
    demo = command(sub, "demo", "nearest neighbours among real movie-review sentences", "demo")
    demo.add_argument("--model", required=True,
                      help="a model folder from_pretrained reads, or a cached hub id")
    demo.add_argument("--data", required=True, help=f"the VADER folder (with {VADER_MOVIES})")
    demo.add_argument("--sentences", type=int, default=2000, help="corpus sentences embedded")
    demo.add_argument("--k", type=int, default=3, help="neighbours shown per query")
    demo.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as e:  # OSError: missing files, FileExistsError, ...
        message = " ".join(str(e).split())  # one line, even for multi-line messages
        raise SystemExit(f"flaxbert {args.command}: {message}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
