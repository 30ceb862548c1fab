"""`distill plan`: the stages of a recipe with FLOPs and memory from their compiled steps."""

import json

import pytest

from distill import accelerators, experiments
from distill.cli import main
from distill.experiments import recipe as recipe_configs
from distill.tasks import plan
from flaxbert import Model, abstract_params, get_config, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import save_pretrained
from flaxbert.tokenization import load_tokenizer

STUDENT = "bert_uncased_L-4_H-256_A-4"


@pytest.fixture(scope="module")
def planned(tmp_path_factory, minilm_dir):
    """The demo recipe planned for one student (plain PT+FT: pre-training, the teacher's and the
    student's fine-tuning) with a small teacher, on this process's one device."""
    base = tmp_path_factory.mktemp("plan")
    teacher = base / "teacher"
    model = Model(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=96), heads=())
    save_pretrained(teacher, model, init_params(model, 0), load_tokenizer(minilm_dir / "vocab.txt"))
    command = ["distill", "plan", f"--config={experiments.DIR / 'recipe.py'}:demo",
               f"--workdir={base / 'plan'}", f"--config.recipe.students=('{STUDENT}',)",
               "--config.recipe.methods=('pt_ft',)", f"--config.teacher_finetune.model.name={teacher}"]
    main(command)
    return base, command, json.loads((base / "plan" / "plan.json").read_text())


def test_mlm_stage_flops_are_six_times_parameters_times_tokens_plus_attention(planned):
    _, _, result = planned
    (row,) = [r for r in result["rows"] if r["kind"] == "pre-training"]
    config = get_config(STUDENT)
    params = abstract_params(Model(config, heads=("mlm",)))
    # every trained weight but the embedding tables (lookups); the tied output projection is
    # counted where it runs: at the masked positions
    matmul = sum(x.size for path, x in _leaves(params) if "embeddings" not in path)
    demo = recipe_configs.get_config("demo").pretrain  # the rows and masks the plan compiled
    batch, length = demo.trainer.batch_size, demo.data.max_seq_length
    predictions, steps = demo.data.max_predictions_per_seq, demo.trainer.num_steps
    L, H, V = config.num_hidden_layers, config.hidden_size, config.vocab_size
    tokens = batch * length
    expected = (6 * matmul * tokens                     # forward + backward of every matmul
                + 12 * L * length * H * tokens           # attention scores and weighted sum
                + 6 * V * H * batch * predictions)       # MLM logits at the masked positions
    assert row["steps"] == steps and row["tokens"] == steps * tokens
    assert abs(row["flops_per_step"] / expected - 1) < 0.10, (row["flops_per_step"], expected)


def test_memory_figure_is_the_compiled_steps(planned, tmp_path):
    _, _, result = planned
    (row,) = [r for r in result["rows"] if r["kind"] == "pre-training"]
    # `distill compile` of the same pre-training config (the demo's pretrain block)
    demo = recipe_configs.get_config("demo").pretrain
    main(["distill", "compile", f"--config={experiments.DIR / 'pretrain.py'}:tiny,corpora",
          f"--workdir={tmp_path}", f"--config.model.name={STUDENT}",
          f"--config.data.max_seq_length={demo.data.max_seq_length}",
          f"--config.data.pack={demo.data.pack}",
          f"--config.data.max_predictions_per_seq={demo.data.max_predictions_per_seq}"])
    report = json.loads((tmp_path / "compile_report.json").read_text())
    assert row["peak_bytes_per_device"] == report["peak"] > 0
    assert row["flops_per_step"] == report["flops"] * report["devices"]


def test_a_stage_over_the_devices_memory_is_flagged(planned):
    base, command, result = planned
    assert not any(r["flags"] for r in result["rows"])
    # the same plan against 1/10,000 of a v4 chip's memory: from plan_cache.json, no compile
    main(command + ["--config.plan.memory_fraction=1e-4"])
    again = json.loads((base / "plan" / "plan.json").read_text())
    assert again["compiled_steps"] == 0 and again["cached_steps"] == len(result["rows"])
    limit = 1e-4 * accelerators.get("tpu_v4").memory_bytes
    for r in again["rows"]:
        assert bool(r["flags"]) == (r["peak_bytes_per_device"] > limit)
    assert again["totals"]["all"]["flagged"] == len(again["rows"])
    assert "memory" in (base / "plan" / "plan.md").read_text().split("| flag |")[1]


def test_the_paper_plan_lists_every_stage():
    """recipe.py:paper: 24 sizes × 2 pre-training phases, and per task the teacher, its logits,
    KD and PD × size, fine-tuning × size × batch size (× 3 methods × 4 lrs a row)."""
    rows = plan.stages(recipe_configs.get_config("paper"))
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind in plan.KINDS}
    assert len(by_kind["pre-training"]) == 48
    assert sum(r["steps"] for r in by_kind["pre-training"]) == 24 * 1_000_000
    assert {r["config"].data.max_seq_length for r in by_kind["pre-training"]} == {128, 512}
    assert [r["steps"] for r in by_kind["pre-training"][:2]] == [900_000, 100_000]
    assert len(by_kind["teacher fine-tuning"]) == len(by_kind["teacher logits"]) == 3
    assert len(by_kind["distillation"]) == 24 * 2 * 3
    assert len(by_kind["fine-tuning"]) == 24 * 5 * 3
    assert {r["runs"] for r in by_kind["fine-tuning"]} == {12}
    sst2_bs8 = [r for r in by_kind["fine-tuning"] if r["stage"].startswith("sst2/")
                and r["batch"] == 8][0]
    assert sst2_bs8["steps"] == -(-4 * 67_349 // 8)  # 4 epochs of SST-2 at batch 8


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value
