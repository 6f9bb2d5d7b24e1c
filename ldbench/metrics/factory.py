"""The one place extractors are built: from a name, its options, the Inception weights switches and the
device. Built once per process for each distinct configuration (every field that changes an extractor is
in the key), so `ldbench run`'s workers, tune-delta and the CLI commands never share one by mistake."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

_BUILT: dict = {}  # per process: ExtractorConfig key -> extractor


@dataclass(frozen=True)
class ExtractorConfig:
    name: str
    options: dict = field(default_factory=dict)
    inception_weights: str | None = None
    allow_unverified: bool = False
    device: str = "cpu"

    def key(self) -> str:
        return json.dumps([self.name, self.options, self.inception_weights, self.allow_unverified, self.device],
                          sort_keys=True, default=str)

    def create_options(self) -> dict:
        """create_extractor's keyword arguments (the device only for extractors that take one)."""
        from ldbench.metrics.extractor_base import EXTRACTORS

        options = dict(self.options)
        if self.name.startswith("inception"):
            if self.inception_weights:
                options["weights_path"] = self.inception_weights
            if self.allow_unverified:
                options["allow_unverified"] = True
        import ldbench.metrics.extractors  # noqa: F401  (registers every extractor)

        if self.name in EXTRACTORS and "device" in inspect.signature(EXTRACTORS.get(self.name)).parameters:
            options.setdefault("device", self.device)
        return options


def extractor(config: ExtractorConfig, reuse: bool = False):
    """The extractor of `config`, built (weights checked again) and kept for this process; with `reuse`, the
    one kept for the same configuration when there is one (a worker's later cells)."""
    from ldbench.metrics.extractor_base import create_extractor

    key = config.key()
    if reuse and key in _BUILT:
        return _BUILT[key]
    _BUILT[key] = create_extractor(config.name, **config.create_options())
    return _BUILT[key]


def suite_extractors(evaluation, inception_weights: str | None = None, allow_unverified: bool = False,
                     device: str = "cpu", reuse: bool = False) -> dict:
    """Every extractor of a suite's evaluation, by name (missing weights fail here, before any work)."""
    return {name: extractor(ExtractorConfig(name, dict(evaluation.extractor_options.get(name, {})),
                                            inception_weights, allow_unverified, device), reuse)
            for name in evaluation.extractors}
