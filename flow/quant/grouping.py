"""Group-shared scales (Nie et al. 2022): cluster the output kernels of a layer on max|w| with k-means."""

from __future__ import annotations

import numpy as np

from flow.errors import AdderFlowError


def kernel_absmax(w_hwio: np.ndarray) -> np.ndarray:
    """max |w| of each output kernel (last axis)."""
    w = np.asarray(w_hwio)
    return np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)


def group_kernels(w_hwio: np.ndarray, groups: int, layer: str = "layer", seed: int = 0) -> np.ndarray:
    """Group id per output channel, groups numbered by increasing max|w| (deterministic).

    k-means (scikit-learn) on the 1-D feature max|w|; fewer groups result when fewer distinct values exist.
    """
    m = kernel_absmax(w_hwio)
    cout = m.size
    if groups < 1:
        raise AdderFlowError(f"groups must be >= 1, got {groups}")
    if groups > cout:
        raise AdderFlowError(f"layer {layer}: groups={groups} exceeds its {cout} output channels")
    if groups == 1:
        return np.zeros(cout, dtype=np.int64)
    k = min(groups, len(np.unique(m)))
    if k == 1:
        return np.zeros(cout, dtype=np.int64)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(m.reshape(-1, 1).astype(np.float64))
    order = np.argsort(km.cluster_centers_.ravel())
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[km.labels_].astype(np.int64)
