"""distill.metrics against scikit-learn / scipy on random and degenerate inputs."""

import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from distill import metrics

SEEDS = [0, 1, 2, 3, 4]


def _sk_f1(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sklearn.metrics.f1_score(y, p, zero_division=0.0)


def _sk_mcc(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sklearn.metrics.matthews_corrcoef(y, p)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_classification_metrics_match_sklearn(seed, num_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, num_classes, n)
    # Correlated predictions so MCC is far from 0.
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, num_classes, n))
    assert metrics.accuracy(p, y) == pytest.approx(
        sklearn.metrics.accuracy_score(y, p), abs=1e-12
    )
    assert metrics.matthews_corrcoef(p, y) == pytest.approx(_sk_mcc(y, p), abs=1e-9)
    if num_classes == 2:
        assert metrics.f1_binary(p, y) == pytest.approx(_sk_f1(y, p), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    y = rng.uniform(0, 5, n)
    x = y + rng.normal(0, 1.5, n)
    assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-9)
    assert metrics.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-9)
    # Heavy ties (STS-B gold scores are multiples of 0.2): average ranks must match scipy.
    yt = np.round(y * 5) / 5
    xt = np.round(x)
    assert metrics.spearman(xt, yt) == pytest.approx(scipy.stats.spearmanr(xt, yt)[0], abs=1e-9)


def test_degenerate_inputs_return_zero_not_nan():
    y = np.array([0, 1, 1, 0, 1])
    const = np.ones(5, dtype=int)
    assert metrics.matthews_corrcoef(const, y) == 0.0 == _sk_mcc(y, const)
    assert metrics.matthews_corrcoef(y, const) == 0.0 == _sk_mcc(const, y)
    assert metrics.matthews_corrcoef(const, const) == 0.0 == _sk_mcc(const, const)
    # No positives anywhere: F1 is 0.0 (sklearn with zero_division=0).
    zeros = np.zeros(5, dtype=int)
    assert metrics.f1_binary(zeros, zeros) == 0.0 == _sk_f1(zeros, zeros)
    assert metrics.pearson(np.full(5, 2.5), [1.0, 2, 3, 4, 5]) == 0.0
    assert metrics.pearson([1.0, 2, 3, 4, 5], np.full(5, 2.5)) == 0.0
    assert metrics.spearman(np.full(5, 2.5), [1.0, 2, 3, 4, 5]) == 0.0
    # Perfect and anti-correlated.
    assert metrics.matthews_corrcoef(y, y) == pytest.approx(1.0)
    assert metrics.matthews_corrcoef(1 - y, y) == pytest.approx(-1.0)
    assert metrics.pearson([1.0, 2, 3], [2.0, 4, 6]) == pytest.approx(1.0)


def test_glue_metrics_keys_and_values():
    y = [1, 0, 0, 1, 1, 0]
    p = [1, 0, 1, 1, 0, 0]
    acc, f1 = 4 / 6, 2 / 3
    out = metrics.glue_metrics("mrpc", p, y)
    assert set(out) == {"acc", "f1", "acc_and_f1"}
    assert out["acc"] == pytest.approx(acc)
    assert out["f1"] == pytest.approx(f1)
    assert out["acc_and_f1"] == pytest.approx((acc + f1) / 2)
    assert metrics.glue_metrics("QQP", p, y) == out
    assert metrics.glue_metrics("cola", p, y) == {"mcc": pytest.approx(_sk_mcc(y, p))}
    for task in ("sst2", "SST-2", "qnli", "rte", "wnli", "sentiment"):
        assert metrics.glue_metrics(task, p, y) == {"acc": pytest.approx(acc)}
    assert metrics.glue_metrics("mnli-m", [0, 1, 2], [0, 1, 1]) == {"acc_m": pytest.approx(2 / 3)}
    assert metrics.glue_metrics("mnli-mm", [0, 1, 2], [0, 2, 2]) == {
        "acc_mm": pytest.approx(2 / 3)
    }
    s = metrics.glue_metrics("sts-b", [0.1, 2.0, 3.5, 4.0], [0.0, 2.4, 3.0, 5.0])
    assert set(s) == {"pearson", "spearman", "corr"}
    assert s["spearman"] == pytest.approx(1.0)
    assert s["corr"] == pytest.approx((s["pearson"] + 1.0) / 2)


def test_main_metric_is_a_key_of_glue_metrics():
    for task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli-m", "mnli-mm", "qnli", "rte",
                 "wnli", "sentiment"):
        preds = [0.5, 1.0, 2.0] if task == "stsb" else [0, 1, 1]
        assert metrics.main_metric(task) in metrics.glue_metrics(task, preds, [0, 1, 0])
    assert metrics.main_metric("mrpc") == "acc_and_f1"
    assert metrics.main_metric("stsb") == "corr"
    assert metrics.main_metric("cola") == "mcc"
    assert metrics.main_metric("mnli") == "acc_m"


def test_input_errors():
    with pytest.raises(ValueError, match="mnli-mm"):
        metrics.glue_metrics("mnli", [0], [0])
    with pytest.raises(ValueError, match="unknown task 'squad'"):
        metrics.glue_metrics("squad", [0], [0])
    with pytest.raises(ValueError, match="different lengths"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="argmax"):
        metrics.accuracy(np.zeros((3, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="class ids"):
        metrics.f1_binary([0.3, 0.9], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.pearson([], [])
