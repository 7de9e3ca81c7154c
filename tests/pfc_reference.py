"""A plain dense NumPy (float64) Partial FC for tests to compare the head against.

Written from the textbook formulas with full one-hot matrices, independent of the
chunked, online-softmax code in ``plsc_cli.heads.partial_fc``.
"""

from __future__ import annotations

import numpy as np

COSINE_CLIP_EPS = 1e-6


def margin_softmax_reference(
    weight: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    margins: tuple[float, float, float],
    scale: float,
    classes: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the loss, d loss/d features and d loss/d weight[classes].

    ``weight`` contains every class; ``classes`` (default: all) selects the centers in
    the softmax, and every label must be among them.
    """
    weight = np.asarray(weight, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    if classes is None:
        classes = np.arange(weight.shape[0])
    w = weight[classes]
    position = {int(c): i for i, c in enumerate(classes)}
    target = np.array([position[int(label)] for label in labels])
    batch, num = x.shape[0], w.shape[0]
    onehot = np.zeros((batch, num))
    onehot[np.arange(batch), target] = 1.0

    x_norm = np.linalg.norm(x, axis=1, keepdims=True)
    w_norm = np.linalg.norm(w, axis=1, keepdims=True)
    xn, wn = x / x_norm, w / w_norm
    cos = xn @ wn.T

    m1, m2, m3 = margins
    if m1 == 1.0 and m2 == 0.0:
        margin_logit = scale * (cos - m3)
        margin_slope = np.full_like(cos, scale)
    else:
        theta = np.arccos(np.clip(cos, -1 + COSINE_CLIP_EPS, 1 - COSINE_CLIP_EPS))
        margin_logit = scale * (np.cos(m1 * theta + m2) - m3)
        margin_slope = scale * m1 * np.sin(m1 * theta + m2) / np.sin(theta)
    logits = np.where(onehot > 0, margin_logit, scale * cos)
    slope = np.where(onehot > 0, margin_slope, scale)

    shifted = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(prob[np.arange(batch), target])))

    grad_cos = (prob - onehot) / batch * slope
    grad_xn = grad_cos @ wn
    grad_wn = grad_cos.T @ xn
    # Jacobian of v / |v|: (I - n n^T) / |v|.
    grad_x = (grad_xn - xn * (grad_xn * xn).sum(1, keepdims=True)) / x_norm
    grad_w = (grad_wn - wn * (grad_wn * wn).sum(1, keepdims=True)) / w_norm
    return loss, grad_x, grad_w


def momentum_update_reference(
    weight: np.ndarray,
    velocity: np.ndarray,
    grad: np.ndarray,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense momentum SGD: v = mu * v + g + wd * w; w = w - lr * v (float64)."""
    weight = np.asarray(weight, dtype=np.float64)
    velocity = momentum * np.asarray(velocity, dtype=np.float64)
    velocity = velocity + grad + weight_decay * weight
    return weight - lr * velocity, velocity
