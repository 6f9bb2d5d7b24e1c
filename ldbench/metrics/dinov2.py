"""The `dinov2` feature extractor (FD-DINOv2, Stein et al. 2023): DINOv2 CLS features from a local
transformers directory; its distances are FD / KD."""

from __future__ import annotations

from typing import Any

import torch

from ldbench.errors import UserError
from ldbench.metrics.extractor_base import EXTRACTORS
from ldbench.metrics.hf_vision import TransformersExtractor


@EXTRACTORS.register("dinov2")
class Dinov2Extractor(TransformersExtractor):
    """DINOv2 CLS features (FD-DINOv2, Stein et al. 2023) from a local transformers directory: FD/KD."""

    name = "dinov2"
    family = "dinov2"
    env = "LDBENCH_DINOV2_WEIGHTS"
    example = "facebook/dinov2-small"
    mean, std, norm_name = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet-norm"

    def _setup(self, config: Any) -> None:
        if getattr(config, "model_type", "") != "dinov2":
            raise UserError(f"{self.weights_path}: model_type {config.model_type!r}, expected dinov2")
        self.size = 224
        self.dim = int(config.hidden_size)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model(pixel_values=pixels).pooler_output  # the final-layernormed CLS token
