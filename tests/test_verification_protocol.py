"""The 10-fold verification protocol against a loop-based numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from plsc_cli.eval.verification import evaluate_embeddings


def _reference(embeddings: np.ndarray, issame: np.ndarray, nfolds: int):
    """Plain loops: cosine -> squared distance, best train threshold per fold."""
    n = len(issame)
    dist = []
    for i in range(n):
        a, b = embeddings[2 * i], embeddings[2 * i + 1]
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        dist.append(2.0 - 2.0 * cos)
    dist = np.array(dist)
    thresholds = [t / 100.0 for t in range(400)]
    # np.array_split sizes: the first n % nfolds folds get one more pair.
    sizes = [n // nfolds + (1 if k < n % nfolds else 0) for k in range(nfolds)]
    starts = np.cumsum([0] + sizes)
    accs, ths = [], []
    for k in range(nfolds):
        test = set(range(starts[k], starts[k + 1]))
        train = [i for i in range(n) if i not in test]
        best_t, best_acc = None, -1.0
        for t in thresholds:
            acc = np.mean([(dist[i] < t) == issame[i] for i in train])
            if acc > best_acc:
                best_t, best_acc = t, acc
        ths.append(best_t)
        accs.append(np.mean([(dist[i] < best_t) == issame[i] for i in sorted(test)]))
    return np.mean(accs), np.std(accs), np.mean(ths)


@pytest.mark.parametrize("num_pairs", [40, 47])
def test_matches_reference(num_pairs):
    rng = np.random.default_rng(num_pairs)
    issame = rng.random(num_pairs) < 0.5
    base = rng.normal(size=(num_pairs, 16))
    noise = np.where(issame[:, None], 0.6, 2.0)
    other = base + noise * rng.normal(size=(num_pairs, 16))
    embeddings = np.empty((2 * num_pairs, 16))
    embeddings[0::2], embeddings[1::2] = base, other
    result = evaluate_embeddings(embeddings, issame, nfolds=10)
    acc, std, threshold = _reference(embeddings, issame, 10)
    assert result["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert result["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert result["threshold"] == pytest.approx(threshold, abs=1e-9)
    assert result["num_pairs"] == num_pairs
    assert 0.6 < result["accuracy"] <= 1.0


def test_separable_pairs_score_one():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 8))
    issame = np.array([True, False] * 10)
    other = np.where(issame[:, None], base, -base)
    embeddings = np.empty((40, 8))
    embeddings[0::2], embeddings[1::2] = base, other
    result = evaluate_embeddings(embeddings, issame)
    assert result["accuracy"] == 1.0
    assert result["accuracy_std"] == 0.0


def test_rejects_odd_rows():
    with pytest.raises(ValueError, match="2N"):
        evaluate_embeddings(np.zeros((3, 4)), np.array([True]))
