"""The AUC utility protocol: is synthetic data as useful as real data for training a classifier?

Three arms train the same binary classifier (same options and seed) and are scored by ROC AUC on the
same real test set:
    "real":      the real training images;
    "synthetic": synthetic images only;
    "mixed":     a share `mix_fraction` of synthetic images, the rest real.
Every arm trains on exactly len(real_train) images, so a difference between arms is due to the data,
not to the amount of it. Images are drawn (seeded) without replacement from each pool; a pool that is
too small is drawn with replacement and the arm records `sampled_with_replacement: True`.
Each arm is an ensemble of `members` classifiers, member i trained from member_seed(seed, i): one
classifier's AUC depends on its training run as much as on its data (on the counterfactual suite the same
single-classifier arm moved by up to 0.03 between two CPUs, and an LD effect of +0.058 between single
classifiers was -0.000 [-0.015, 0.015] between 3-member arms), so the arm's AUC is that of the members'
mean prediction, with a bootstrap CI over members and test images (ldbench.classify.oracle.read), and each
member's own AUC on record.
Each arm keeps its test scores (the members' mean) so that callers can run paired tests (DeLong) between
arms or methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ldbench.classify.models import ClassifierOptions
from ldbench.classify.oracle import read, train_oracle
from ldbench.classify.train import check_images, check_targets
from ldbench.errors import UserError

ARMS = ("real", "synthetic", "mixed")
_DRAW_STREAM = 0x0A7C  # tag of the random stream that draws the training subsets


def _check_pair(pair: object, what: str, need_both_classes: bool) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise UserError(f"utility protocol {what} must be a pair (images, labels)")
    images = check_images(pair[0], f"{what} images", minimum=2 if need_both_classes else 1)
    labels = np.asarray(pair[1])
    if need_both_classes:
        return images, check_targets(labels, len(images), "binary", f"{what} labels")
    # a synthetic pool may hold one class only; the arm that draws from it then says so when it trains
    if labels.ndim != 1 or len(labels) != len(images) or not np.all(np.isin(labels, [0, 1])):
        raise UserError(f"utility protocol {what} labels must be 0/1, one per image ({len(images)} images)")
    return images, labels.astype(np.float64)


def _draw(rng: np.random.Generator, pool: int, k: int) -> tuple[np.ndarray, bool]:
    """k indices into a pool of `pool` items: without replacement when possible."""
    replace = k > pool
    return rng.choice(pool, size=k, replace=replace), replace


def _check_real_result(result: object, n_test: int) -> dict[str, Any]:
    keys = ("auc", "ci95", "scores", "member_aucs", "n_train", "n_train_synthetic", "seed", "history")
    if not isinstance(result, dict) or any(k not in result for k in keys):
        raise UserError(
            f"utility protocol real_result must be the 'real' entry of an earlier result (keys {keys})"
        )
    if len(np.asarray(result["scores"])) != n_test:
        raise UserError(
            f"utility protocol real_result has {len(result['scores'])} test scores but the test set has "
            f"{n_test} images; it was computed on another test set, recompute it"
        )
    return result


@dataclass(frozen=True)
class UtilityOptions:
    """mix_fraction: the synthetic share of the "mixed" arm; quiet: no progress bars; n_boot: bootstrap
    resamples of each AUC's CI (0: no CI); members: classifiers per arm, each from its own seed (1: the
    paper's single classifier; suites use evaluation.utility_members, default 3)."""

    mix_fraction: float = 0.5
    quiet: bool = False
    n_boot: int = 1000
    members: int = 1


def utility_protocol(
    real_train: tuple[np.ndarray, np.ndarray],
    synth_train: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    options: ClassifierOptions,
    seed: int,
    protocol: UtilityOptions = UtilityOptions(),
    real_result: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train the "real", "synthetic" and "mixed" arms and score each on `real_test`.

    Each arm: {"auc", "ci95" ([lo, hi], or None when protocol.n_boot == 0), "scores" (the members' mean test
    prediction), "member_aucs", "n_train", "n_train_synthetic", "sampled_with_replacement", "seed",
    "history" (one per member)}.
    `real_result`: the "real" entry of an earlier call on the same real data, test set, options and
    seed; it is returned as is instead of retraining (every cell of a benchmark shares one real arm).
    """
    mix_fraction = protocol.mix_fraction
    if (
        isinstance(mix_fraction, bool)
        or not isinstance(mix_fraction, int | float)
        or not 0 <= mix_fraction <= 1
    ):
        raise UserError(f"utility protocol mix_fraction must be a number in [0, 1], got {mix_fraction!r}")
    if isinstance(protocol.members, bool) or not isinstance(protocol.members, int) or protocol.members < 1:
        raise UserError(f"utility protocol members must be an integer >= 1, got {protocol.members!r}")
    real_x, real_y = _check_pair(real_train, "real_train", need_both_classes=True)
    syn_x, syn_y = _check_pair(synth_train, "synth_train", need_both_classes=False)
    test = _check_pair(real_test, "real_test", need_both_classes=True)
    shapes = {
        what: x.shape[1:]
        for what, x in (("real_train", real_x), ("synth_train", syn_x), ("real_test", test[0]))
    }
    if len(set(shapes.values())) > 1:
        raise UserError(f"utility protocol images differ in size ({shapes}); resize them to one size")

    n = len(real_x)
    n_syn_mixed = math.floor(mix_fraction * n + 0.5)
    arm = _Arm(test, options, seed, protocol)
    results: dict[str, dict[str, Any]] = {}
    if real_result is not None:
        results["real"] = _check_real_result(real_result, len(test[0]))
    else:
        results["real"] = arm("real", real_x, real_y, 0, False)

    rng = np.random.default_rng([_DRAW_STREAM, int(seed), 1])
    idx, replaced = _draw(rng, len(syn_x), n)
    results["synthetic"] = arm("synthetic", syn_x[idx], syn_y[idx], n, replaced)

    rng = np.random.default_rng([_DRAW_STREAM, int(seed), 2])
    real_idx, _ = _draw(rng, n, n - n_syn_mixed)
    syn_idx, replaced = _draw(rng, len(syn_x), n_syn_mixed)
    mixed_x = np.concatenate([real_x[real_idx], syn_x[syn_idx]])
    mixed_y = np.concatenate([real_y[real_idx], syn_y[syn_idx]])
    results["mixed"] = arm("mixed", mixed_x, mixed_y, n_syn_mixed, replaced)
    return results


def real_arm(real_train: tuple[np.ndarray, np.ndarray], real_test: tuple[np.ndarray, np.ndarray],
             options: ClassifierOptions, seed: int, protocol: UtilityOptions = UtilityOptions()) -> dict[str, Any]:
    """The "real" arm alone, to be passed as `real_result` to every utility_protocol call that shares it."""
    real_x, real_y = _check_pair(real_train, "real_train", need_both_classes=True)
    test = _check_pair(real_test, "real_test", need_both_classes=True)
    return _Arm(test, options, seed, protocol)("real", real_x, real_y, 0, False)


@dataclass(frozen=True)
class _Arm:
    """Trains one arm with the protocol's options and seed and scores it on the real test set."""

    test: tuple[np.ndarray, np.ndarray]
    options: ClassifierOptions
    seed: int
    protocol: UtilityOptions

    def __call__(self, name: str, x: np.ndarray, y: np.ndarray, n_synthetic: int, replaced: bool) -> dict[str, Any]:
        try:
            ensemble = train_oracle((x, y), "binary", self.options, self.seed, self.protocol.members,
                                    quiet=self.protocol.quiet)
        except UserError as exc:
            raise UserError(f"utility protocol arm {name!r}: {exc}") from None
        test_x, test_y = self.test
        readings = read(ensemble.predict(test_x), test_y, "binary", self.protocol.n_boot, self.seed)
        auc = next(r for r in readings if r.metric == "auc")
        return {
            "auc": auc.value,
            "ci95": None if auc.ci95 is None else [auc.ci95[0], auc.ci95[1]],
            "scores": auc.per_item,
            "member_aucs": auc.member_values,
            "n_train": len(x),
            "n_train_synthetic": n_synthetic,
            "sampled_with_replacement": replaced,
            "seed": self.seed,
            "history": [m.history for m in ensemble.members],
        }
