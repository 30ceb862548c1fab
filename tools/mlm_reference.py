"""Trains HF transformers' `BertForMaskedLM` (PyTorch) on exactly the batches `distill pretrain`
makes, with the same optimizer and schedule, and prints its loss beside a flaxbert run's: a check
that our pre-training dynamics are the reference's, not only our forward pass.

    distill pretrain --config pretrain.py:tiny,corpora --workdir runs/pt_64 \
        --config.data.pack=False --config.data.max_seq_length=64 \
        --config.data.max_predictions_per_seq=10 --config.trainer.num_steps=1250 \
        --config.trainer.log_every=125
    python tools/mlm_reference.py --config pretrain.py:tiny,corpora \
        --flaxbert_run runs/pt_64 --config.data.pack=False --config.data.max_seq_length=64 \
        --config.data.max_predictions_per_seq=10 --config.trainer.num_steps=1250 \
        --config.trainer.log_every=125

Measured 2026-12-04 (BERT-Tiny, 1,250 steps × 32 unpacked 64-token rows): the logged single-batch
losses agree within 0.02 at each logged step compared (125 … 1,000 and 1,250) and the held-out MLM accuracy is 0.106 here against
flaxbert's 0.104 (experiments/README.md). AdamW, warmup + linear decay, global-norm clipping and
the decay mask (no decay on biases and LayerNorm) as `distill/optim.py` sets them for
`optimizer.name=adamw`, `schedule=linear`; unpacked rows only (HF BERT has no packed-segment mask).
"""

import json
import sys
from pathlib import Path

import torch
import transformers
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill.tasks import pretrain  # noqa: E402
from flaxbert.configs import get_config  # noqa: E402
from flaxbert.tokenization import load_tokenizer  # noqa: E402

config_flags.DEFINE_config_file("config", None, "a pretrain experiment config")
flags.DEFINE_string("flaxbert_run", "", "a `distill pretrain` work directory to compare with")


def masked_loss(model, batch):
    """Mean cross-entropy and accuracy over the masked positions (logits only where needed)."""
    tensor = lambda name: torch.as_tensor(batch[name], dtype=torch.long)  # noqa: E731
    hidden = model.bert(input_ids=tensor("input_word_ids"), attention_mask=tensor("input_mask"),
                        token_type_ids=tensor("input_type_ids")).last_hidden_state
    positions = tensor("masked_lm_positions")
    logits = model.cls(torch.gather(hidden, 1, positions[..., None].expand(-1, -1,
                                                                            hidden.shape[-1])))
    labels, weights = tensor("masked_lm_ids"), torch.as_tensor(batch["masked_lm_weights"])
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                            reduction="none")
    total = weights.sum()
    hits = ((logits.argmax(-1) == labels).float() * weights).sum()
    return (nll * weights.flatten()).sum() / total, hits, total


def main(_):
    config = flags.FLAGS.config
    if config.data.pack or config.data.nsp:
        raise SystemExit("mlm_reference: needs --config.data.pack=False and data.nsp=False")
    if config.optimizer.name != "adamw" or config.optimizer.schedule != "linear":
        raise SystemExit("mlm_reference: implements optimizer.name=adamw, schedule=linear only")
    torch.manual_seed(config.trainer.seed)
    spec = get_config(config.model.name).replace(**config.model.overrides)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings))
    opt = config.optimizer
    no_decay = lambda name: "bias" in name or "LayerNorm" in name  # noqa: E731
    groups = [{"params": [p for n, p in model.named_parameters() if not no_decay(n)],
               "weight_decay": opt.weight_decay},
              {"params": [p for n, p in model.named_parameters() if no_decay(n)],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.b1, opt.b2), eps=opt.eps)
    steps = config.trainer.num_steps
    warmup = round(opt.warmup_steps or opt.warmup_fraction * steps)  # as distill/optim.py
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warmup if s < warmup else max(0.0, (steps - s) / (steps - warmup)))
    theirs = {}
    if flags.FLAGS.flaxbert_run:
        for line in (Path(flags.FLAGS.flaxbert_run) / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                theirs[record["step"]] = record["loss"]
    train, held_out = pretrain.datasets(config, load_tokenizer(config.data.vocab))
    batches = iter(train)
    for step in range(1, steps + 1):
        model.train()
        loss, _, _ = masked_loss(model, next(batches))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_norm)
        optimizer.step()
        schedule.step()
        if step % config.trainer.log_every == 0:
            other = f"  flaxbert {theirs[step]:.4f}" if step in theirs else ""
            print(f"step {step}: loss {loss.item():.4f}{other}", flush=True)
    model.eval()
    hits = total = 0.0
    with torch.no_grad():
        for batch in held_out:
            _, h, n = masked_loss(model, batch)
            hits, total = hits + h.item(), total + n.item()
    print(f"held-out MLM accuracy {hits / total:.4f}")


if __name__ == "__main__":
    app.run(main)
