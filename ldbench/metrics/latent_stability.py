"""How much the generated latent distribution still moves late in a fine-tune (pure math).

Input: the probe's statistics (ldbench.models.probe): at K checkpoint steps, for each of n samples drawn
from the same noise every time, each channel's spatial mean (K, n, C) and mean of squares (K, n, C).

`latent_instability` of one sample: the standard deviation, over the checkpoints of the second half of
training, of its channel means, averaged over channels. 0 = the model maps that noise to the same latent
statistics from mid-training on (it has settled); larger = its output distribution keeps moving. The
metric is the mean over samples, so its CI is a bootstrap over samples, and two fine-tunes probed with the
same noise are compared sample by sample (paired).

`channel_summary`: each channel's mean and standard deviation over samples and pixels at each checkpoint,
what the report plots next to the loss curve.
"""

from __future__ import annotations

import numpy as np


def late_checkpoints(steps: np.ndarray) -> np.ndarray:
    """Boolean mask of the checkpoints in the second half of training (steps >= half the last step)."""
    steps = np.asarray(steps)
    if steps.ndim != 1 or len(steps) == 0:
        raise ValueError(f"checkpoint steps must be a non-empty 1-D array, got shape {steps.shape}")
    return steps >= steps.max() / 2


def latent_instability(channel_mean: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per sample (n,): the std over late checkpoints of its channel means, averaged over channels."""
    m = np.asarray(channel_mean, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] != len(steps):
        raise ValueError(f"channel_mean must be (checkpoints={len(steps)}, samples, channels), got {m.shape}")
    late = late_checkpoints(steps)
    if late.sum() < 2:
        raise ValueError("latent instability needs at least 2 checkpoints in the second half of training")
    return m[late].std(axis=0).mean(axis=1)


def channel_summary(channel_mean: np.ndarray, channel_mean_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (K, C): every channel's mean and standard deviation over samples and pixels at each
    checkpoint (each sample has the same number of pixels, so pooling the per-sample moments is exact)."""
    m = np.asarray(channel_mean, dtype=np.float64)
    sq = np.asarray(channel_mean_square, dtype=np.float64)
    if m.shape != sq.shape or m.ndim != 3:
        raise ValueError(f"channel moments must both be (checkpoints, samples, channels), got {m.shape}, {sq.shape}")
    mean = m.mean(axis=1)
    var = np.maximum(sq.mean(axis=1) - mean**2, 0.0)
    return mean, np.sqrt(var)
