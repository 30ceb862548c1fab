"""The cross-framework check: fine-tune any export with transformers-PyTorch on the project's
own split of the demo task and the recipe's schedule, and print dev / test accuracy — so an
ordering in the recipe's table can be seen not to be an artefact of our fine-tuning.

    python tools/hf_finetune.py runs/replica/pretrain_tiny/export --lr 3e-4 1e-4 5e-5 3e-5
    python tools/hf_finetune.py random:runs/replica/pretrain_tiny/export   # same shape, fresh init

`BertForSequenceClassification` (the export's encoder + pooler, a fresh classifier), AdamW
(β 0.9 / 0.999, ε 1e-6, weight decay 0.01 off biases and LayerNorms, gradient clipping at 1.0 —
the project's defaults), linear warmup over 10 % of the steps then linear decay to 0, batch 32,
4 epochs, max length 64, the split `finetune.py:sentiment` uses (VADER movie snippets,
`vader_sentiment(seed=0)`: 8,456 / 1,056 / 1,056). Dev and test are scored after every epoch and
the epoch with the best dev accuracy is reported (our fine-tuning keeps its best-dev checkpoint
likewise, every 200 steps); with several lrs, dev picks one, as the recipe's grid does. Prints
one JSON line per lr and one for the pick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers

from distill.data.tasks import vader_sentiment
from distill.defaults import VADER


def load_model(spec: str):
    """`BertForSequenceClassification` from an export folder, or `random:FOLDER` — the
    folder's architecture at a fresh init (the from-scratch control, seeded)."""
    folder = spec.removeprefix("random:")
    if spec.startswith("random:"):
        config = transformers.BertConfig.from_pretrained(folder, num_labels=2)
        return transformers.BertForSequenceClassification(config), folder
    return transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2), folder


def encode(tokenizer, examples, max_length: int):
    enc = tokenizer([e.text_a for e in examples], max_length=max_length, truncation=True,
                    padding="max_length", return_tensors="pt")
    return enc, torch.tensor([e.label for e in examples])


@torch.no_grad()
def accuracy(model, data, batch_size: int = 256) -> float:
    model.eval()
    enc, labels = data
    hits = 0
    for start in range(0, len(labels), batch_size):
        part = {k: v[start:start + batch_size] for k, v in enc.items()}
        hits += int((model(**part).logits.argmax(-1) == labels[start:start + batch_size]).sum())
    return hits / len(labels)


def finetune(spec: str, lr: float, *, epochs: float = 4, batch_size: int = 32,
             warmup: float = 0.1, max_length: int = 64, seed: int = 0, limit: int = 0) -> dict:
    """One fine-tuning run; `limit` > 0 keeps the first `limit` training examples."""
    torch.manual_seed(seed)
    model, folder = load_model(spec)
    tokenizer = transformers.BertTokenizerFast(str(Path(folder) / "vocab.txt"))
    splits = vader_sentiment(VADER, seed=0)
    train = splits["train"][:limit] if limit else splits["train"]
    enc, labels = encode(tokenizer, train, max_length)
    dev, test = (encode(tokenizer, splits[s], max_length) for s in ("dev", "test"))
    steps_per_epoch = -(-len(labels) // batch_size)
    num_steps = int(round(epochs * steps_per_epoch))
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.999), eps=1e-6)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(warmup * num_steps), num_steps)
    generator = torch.Generator().manual_seed(seed)
    step, evaluations = 0, []
    while step < num_steps:
        model.train()
        for index in torch.randperm(len(labels), generator=generator).split(batch_size):
            loss = model(**{k: v[index] for k, v in enc.items()}, labels=labels[index]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step == num_steps:
                break
        evaluations.append({"step": step, "dev_acc": accuracy(model, dev),
                            "test_acc": accuracy(model, test)})
    best = max(evaluations, key=lambda e: e["dev_acc"])  # first of equals: the earliest
    return {"model": spec, "lr": lr, "steps": step, "train_examples": len(labels),
            "best_step": best["step"], "dev_acc": best["dev_acc"], "test_acc": best["test_acc"],
            "final_dev_acc": evaluations[-1]["dev_acc"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an export folder (HF layout) or random:FOLDER")
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-4],
                        help="one or more lrs; with several, dev picks")
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=0.1, help="warmup fraction of the steps")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="first N training examples only")
    args = parser.parse_args(argv)
    runs = []
    for lr in args.lr:
        runs.append(finetune(args.model, lr, epochs=args.epochs, batch_size=args.batch_size,
                             warmup=args.warmup, max_length=args.max_length, seed=args.seed,
                             limit=args.limit))
        print(json.dumps(runs[-1]), flush=True)
    best = max(runs, key=lambda r: r["dev_acc"])
    print(json.dumps({"picked_on_dev": best}), flush=True)
    return best


if __name__ == "__main__":
    main()
