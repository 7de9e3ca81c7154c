"""The 10-fold face verification protocol of LFW-style pair sets.

Pairs are embeddings ``2i`` and ``2i + 1``. Embeddings are L2-normalised and a
pair counts as "same" when its squared Euclidean distance is below a threshold
(for unit vectors, distance = 2 - 2 * cosine, so 0 to 4). The pairs are cut into
``nfolds`` contiguous folds; for each fold the threshold with the best accuracy
on the other folds is applied to the held-out fold. The reported accuracy is the
mean and standard deviation over the held-out folds.
"""

from __future__ import annotations

import numpy as np

# Candidate thresholds on the squared distance, 0.00 to 3.99 in steps of 0.01.
THRESHOLDS = np.arange(0, 4, 0.01)


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Return the squared distance of each consecutive pair of L2-normalised rows."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] % 2 != 0:
        raise ValueError(
            f"embeddings must have shape [2N, D] with pairs on consecutive rows, "
            f"got {emb.shape}"
        )
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.maximum(norms, 1e-12)
    diff = emb[0::2] - emb[1::2]
    return np.sum(diff * diff, axis=1)


def _accuracies(distances: np.ndarray, issame: np.ndarray) -> np.ndarray:
    """Return the accuracy of every candidate threshold, shape [len(THRESHOLDS)]."""
    predicted = distances[None, :] < THRESHOLDS[:, None]
    return np.mean(predicted == issame[None, :], axis=1)


def evaluate_embeddings(
    embeddings: np.ndarray, issame: np.ndarray, nfolds: int = 10
) -> dict[str, float]:
    """Run the k-fold verification protocol.

    Returns ``accuracy`` (mean over held-out folds), ``accuracy_std``,
    ``threshold`` (mean of the per-fold thresholds, on the squared distance)
    and ``num_pairs``. Ties between thresholds go to the smallest one.
    """
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    distances = pair_distances(embeddings)
    if distances.shape[0] != issame.shape[0]:
        raise ValueError(
            f"{distances.shape[0]} pairs of embeddings but {issame.shape[0]} "
            "issame labels"
        )
    num_pairs = issame.shape[0]
    if nfolds < 2 or nfolds > num_pairs:
        raise ValueError(f"nfolds must be in [2, {num_pairs}], got {nfolds}")
    folds = np.array_split(np.arange(num_pairs), nfolds)
    fold_accuracy = np.empty(nfolds)
    fold_threshold = np.empty(nfolds)
    for i, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])
        best = int(np.argmax(_accuracies(distances[train], issame[train])))
        fold_threshold[i] = THRESHOLDS[best]
        predicted = distances[test] < fold_threshold[i]
        fold_accuracy[i] = np.mean(predicted == issame[test])
    return {
        "accuracy": float(fold_accuracy.mean()),
        "accuracy_std": float(fold_accuracy.std()),
        "threshold": float(fold_threshold.mean()),
        "num_pairs": int(num_pairs),
    }
