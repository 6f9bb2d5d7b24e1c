"""Which attribute columns of a table can be predicted, and as what task (oracles, the AUC protocol)."""

from __future__ import annotations

import numpy as np

from ldbench.data.base import ImageTable

# Attribute columns that are bookkeeping, never predicted.
NOT_ATTRIBUTES = {"subject", "visit", "split", "slice", "path", "timepoint"}
# Values read as the negative class of a binary attribute (AUC is for the other value).
_NEGATIVE = {"CN", "cn", "normal", "healthy", "no", "false", "False", "0"}



def attribute_task(values: np.ndarray) -> tuple[str, object] | None:
    """("binary", positive value), ("regression", None), or None when a column cannot be predicted."""
    values = np.asarray(values)
    unique = np.unique(values)
    if len(unique) == 2:
        negatives = [u for u in unique.tolist() if str(u) in _NEGATIVE]
        positive = next(u for u in unique.tolist() if u not in negatives) if len(negatives) == 1 else unique[-1].item()
        return "binary", positive
    if values.dtype.kind == "f" and len(unique) > 2:
        return "regression", None
    return None


def encode_targets(values, task: str, positive) -> np.ndarray:
    values = np.asarray(values)
    if task == "binary":
        return (values == positive).astype(np.float32)
    return values.astype(np.float32)


def predictable_attributes(table: ImageTable) -> dict[str, tuple[str, object]]:
    out = {}
    for name in sorted(table.attributes):
        if name in NOT_ATTRIBUTES:
            continue
        task = attribute_task(table.attributes[name])
        if task is not None:
            out[name] = task
    return out
