"""Evaluation metrics for sentence(-pair) tasks: plain numpy, no framework.

Every function takes host arrays (lists or numpy) of *class ids* (or floats for regression) and
returns a Python float. Degenerate inputs follow scikit-learn's convention for MCC: when a
correlation is undefined (a constant prediction or a constant label vector) the result is 0.0,
never NaN.

GLUE metrics (Wang et al. 2018, "GLUE: A Multi-Task Benchmark ..."; the leaderboard's task score
is the unweighted mean of a task's metrics):

| task               | keys returned                           | main_metric (GLUE task score) |
|--------------------|-----------------------------------------|-------------------------------|
| cola               | mcc                                     | mcc                           |
| sst2               | acc                                     | acc                           |
| mrpc, qqp          | acc, f1, acc_and_f1                     | acc_and_f1 = (acc + f1) / 2   |
| stsb               | pearson, spearman, corr                 | corr = (pearson + spearman)/2 |
| mnli-m / mnli-mm   | acc_m / acc_mm                          | acc_m / acc_mm                |
| qnli, rte, wnli    | acc                                     | acc                           |
| sentiment (demo)   | acc                                     | acc                           |

MNLI has two dev sets, evaluated separately: call ``glue_metrics("mnli-m", ...)`` on
dev_matched and ``glue_metrics("mnli-mm", ...)`` on dev_mismatched; the keys differ (``acc_m``,
``acc_mm``) so both dicts merge into one metrics record. ``glue_metrics("mnli", ...)`` raises,
because it cannot know which set it was given; ``main_metric("mnli")`` is ``"acc_m"`` (model
selection on matched, as BERT and the HF scripts do).

F1 for MRPC/QQP is binary F1 of the positive class 1 (paraphrase / duplicate), as GLUE reports.

Example:
    >>> glue_metrics("mrpc", [1, 0, 1, 1], [1, 0, 0, 1])
    {'acc': 0.75, 'f1': 0.8, 'acc_and_f1': 0.775}
    >>> main_metric("mrpc")
    'acc_and_f1'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence | np.ndarray

# Task name -> metric names; aliases accepted by `_canonical`.
_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("acc",),
    "mrpc": ("acc", "f1", "acc_and_f1"),
    "qqp": ("acc", "f1", "acc_and_f1"),
    "stsb": ("pearson", "spearman", "corr"),
    "mnli-m": ("acc_m",),
    "mnli-mm": ("acc_mm",),
    "qnli": ("acc",),
    "rte": ("acc",),
    "wnli": ("acc",),
    "sentiment": ("acc",),
}
_MAIN = {
    "cola": "mcc",
    "sst2": "acc",
    "mrpc": "acc_and_f1",
    "qqp": "acc_and_f1",
    "stsb": "corr",
    "mnli": "acc_m",
    "mnli-m": "acc_m",
    "mnli-mm": "acc_mm",
    "qnli": "acc",
    "rte": "acc",
    "wnli": "acc",
    "sentiment": "acc",
}
_ALIASES = {
    "sst-2": "sst2",
    "sts-b": "stsb",
    "mnli_matched": "mnli-m",
    "mnli-matched": "mnli-m",
    "mnli_m": "mnli-m",
    "mnli_mismatched": "mnli-mm",
    "mnli-mismatched": "mnli-mm",
    "mnli_mm": "mnli-mm",
}
_REGRESSION = {"stsb"}


def _canonical(task: str) -> str:
    name = task.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _MAIN:
        raise ValueError(
            f"unknown task {task!r}; expected one of {sorted(_MAIN)} "
            f"(aliases: {sorted(_ALIASES)})"
        )
    return name


def _pair(predictions: ArrayLike, labels: ArrayLike, *, floats: bool) -> tuple[np.ndarray, ...]:
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"predictions and labels must be 1-D (one value per example), got shapes "
            f"{p.shape} and {y.shape}; for classification pass class ids, e.g. "
            f"logits.argmax(-1)"
        )
    if p.shape != y.shape:
        raise ValueError(
            f"predictions ({p.shape[0]}) and labels ({y.shape[0]}) have different lengths"
        )
    if p.size == 0:
        raise ValueError("predictions and labels are empty; a metric needs at least one example")
    if floats:
        return p.astype(np.float64), y.astype(np.float64)
    for name, a in (("predictions", p), ("labels", y)):
        if a.dtype.kind == "f" and not np.all(a == np.round(a)):
            raise ValueError(
                f"{name} must be class ids (integers), got non-integer floats such as "
                f"{a[a != np.round(a)][0]!r}; pass logits.argmax(-1)"
            )
    return p, y


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of exact matches: mean(pred == label)."""
    p, y = _pair(predictions, labels, floats=False)
    return float(np.mean(p == y))


def f1_binary(predictions: ArrayLike, labels: ArrayLike) -> float:
    """F1 of the positive class 1: 2·TP / (2·TP + FP + FN); 0.0 when TP + FP + FN = 0.

    Matches ``sklearn.metrics.f1_score(labels, predictions)`` (zero_division → 0.0).
    """
    p, y = _pair(predictions, labels, floats=False)
    pp, yp = p == 1, y == 1
    tp = np.sum(pp & yp)
    fp = np.sum(pp & ~yp)
    fn = np.sum(~pp & yp)
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multiclass form of Gorodkin 2004, as in scikit-learn).

    With C the confusion matrix, t_k / p_k the true / predicted counts of class k, c = trace(C)
    and s = N:  MCC = (c·s − t·p) / sqrt((s² − p·p)(s² − t·t)); 0.0 if the denominator is 0
    (constant predictions or constant labels), like sklearn.
    """
    p, y = _pair(predictions, labels, floats=False)
    classes, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = len(classes)
    yi, pi = inv[: len(y)], inv[len(y) :]
    t = np.bincount(yi, minlength=k).astype(np.float64)
    q = np.bincount(pi, minlength=k).astype(np.float64)
    c = float(np.sum(yi == pi))
    s = float(len(y))
    cov_yp = c * s - t @ q
    cov_pp = s * s - q @ q
    cov_yy = s * s - t @ t
    denom = cov_pp * cov_yy
    if denom == 0:
        return 0.0
    return float(cov_yp / np.sqrt(denom))


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Pearson r = Σ(x−x̄)(y−ȳ) / sqrt(Σ(x−x̄)² Σ(y−ȳ)²); 0.0 if either input is constant."""
    x, y = _pair(predictions, labels, floats=True)
    xc = x - x.mean()
    yc = y - y.mean()
    sxx = float(xc @ xc)
    syy = float(yc @ yc)
    if sxx == 0.0 or syy == 0.0:
        return 0.0
    r = float(xc @ yc) / np.sqrt(sxx * syy)
    return float(np.clip(r, -1.0, 1.0))


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start of each run of equal values in sorted order.
    new_run = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.concatenate([starts[1:], [len(a)]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Spearman ρ = Pearson r of the average-tie ranks; 0.0 if either input is constant."""
    x, y = _pair(predictions, labels, floats=True)
    return pearson(_rankdata(x), _rankdata(y))


def glue_metrics(task: str, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The official GLUE metrics of ``task`` (see the module table for keys).

    Args:
        task: cola, sst2, mrpc, stsb, qqp, mnli-m, mnli-mm, qnli, rte, wnli or sentiment
            (aliases: sst-2, sts-b, mnli_matched, mnli_mismatched). Plain ``mnli`` raises: say
            which dev set the predictions are for.
        predictions: [N] class ids (argmax of the logits) or, for stsb, [N] float scores.
        labels: [N] gold class ids, or gold scores for stsb.
    """
    name = _canonical(task)
    if name == "mnli":
        raise ValueError(
            "task 'mnli' is ambiguous for evaluation: MNLI has two dev sets; pass task='mnli-m' "
            "for dev_matched (key acc_m) or task='mnli-mm' for dev_mismatched (key acc_mm)"
        )
    if name in _REGRESSION:
        pr, sp = pearson(predictions, labels), spearman(predictions, labels)
        return {"pearson": pr, "spearman": sp, "corr": (pr + sp) / 2}
    if name == "cola":
        return {"mcc": matthews_corrcoef(predictions, labels)}
    acc = accuracy(predictions, labels)
    if name in ("mrpc", "qqp"):
        f1 = f1_binary(predictions, labels)
        return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2}
    (key,) = _TASK_METRICS[name]
    return {key: acc}


def main_metric(task: str) -> str:
    """The key of ``glue_metrics`` used for model selection and the GLUE score.

    It is the GLUE leaderboard's task score: mcc (CoLA), acc_and_f1 = mean of accuracy and F1
    (MRPC, QQP), corr = mean of Pearson and Spearman (STS-B), accuracy elsewhere; ``acc_m`` for
    ``mnli`` / ``mnli-m`` and ``acc_mm`` for ``mnli-mm``. Higher is better for all of them.
    """
    return _MAIN[_canonical(task)]


def is_regression(task: str) -> bool:
    """True for tasks scored on float predictions (STS-B)."""
    return _canonical(task) in _REGRESSION
