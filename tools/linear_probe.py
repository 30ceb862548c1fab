"""What a frozen encoder's features hold for the demo task: a logistic regression on the
[CLS] vector, the pooled output and the mean over real tokens of the training sentences, scored
on dev (experiments/README.md, "What the pre-trained features hold").

    python tools/linear_probe.py runs/replica/pretrain_tiny/export random:tiny

Each argument is a model folder (any format `from_pretrained` reads) or `random:NAME`, a fresh
init of a named config. Needs scikit-learn (the test extra).
"""

import sys
from collections.abc import Sequence

import jax
import numpy as np
from sklearn.linear_model import LogisticRegression

from distill.data.tasks import vader_sentiment
from distill.defaults import MINILM, VADER
from flaxbert import Model, get_config, init_params
from flaxbert.pretrained import from_pretrained
from flaxbert.tokenization import Preprocessor, load_tokenizer

FEATURES = ("cls", "pooled", "mean")


def load(spec: str):
    """(model without heads, params) from a folder or `random:NAME`."""
    if spec.startswith("random:"):
        model = Model(get_config(spec.removeprefix("random:")), heads=())
        return model, init_params(model, 0)
    loaded = from_pretrained(spec, heads=(), tokenizer=False)
    return loaded.model, loaded.params


def frozen_features(model, params, tokenizer, texts: Sequence[str], seq_length: int = 64,
                    batch_size: int = 256) -> dict[str, np.ndarray]:
    """[CLS], pooled and mean-over-real-tokens features of `texts`, [N, H] each."""
    apply = jax.jit(lambda p, b: model.apply({"params": p}, **b))
    preprocess = Preprocessor(tokenizer, seq_length)  # as fine-tuning packs the task's texts
    out = {name: [] for name in FEATURES}
    for start in range(0, len(texts), batch_size):
        batch = preprocess(texts[start:start + batch_size])
        result = apply(params, batch)
        sequence, real = np.asarray(result["sequence_output"]), batch["input_mask"][..., None]
        out["cls"].append(sequence[:, 0])
        out["pooled"].append(np.asarray(result["pooled_output"]))
        out["mean"].append((sequence * real).sum(1) / real.sum(1))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def probe(train: dict[str, np.ndarray], train_labels, dev: dict[str, np.ndarray],
          dev_labels) -> dict[str, float]:
    """Dev accuracy of a logistic regression fitted on each kind of training feature."""
    return {name: LogisticRegression(max_iter=2000).fit(train[name], train_labels)
            .score(dev[name], dev_labels) for name in FEATURES}


def main(specs: Sequence[str]) -> None:
    tokenizer = load_tokenizer(str(MINILM / "vocab.txt"))
    splits = vader_sentiment(VADER)
    texts = {s: [e.text_a for e in splits[s]] for s in ("train", "dev")}
    labels = {s: np.array([e.label for e in splits[s]]) for s in ("train", "dev")}
    for spec in specs:
        model, params = load(spec)
        features = {s: frozen_features(model, params, tokenizer, texts[s]) for s in texts}
        accuracy = probe(features["train"], labels["train"], features["dev"], labels["dev"])
        print(spec, "  ".join(f"{k} {100 * v:.1f}" for k, v in accuracy.items()))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
