"""The `clip` feature extractor (as CMMD, Jayasumana et al. 2024): CLIP image embeddings from a local
transformers directory (a full CLIP model or its vision tower); its distances are FD / KD."""

from __future__ import annotations

from typing import Any

import torch

from ldbench.errors import UserError
from ldbench.metrics.extractor_base import EXTRACTORS
from ldbench.metrics.hf_vision import TransformersExtractor


@EXTRACTORS.register("clip")
class ClipExtractor(TransformersExtractor):
    """CLIP image embeddings (as CMMD, Jayasumana et al. 2024) from a local transformers directory: FD/KD."""

    name = "clip"
    family = "clip"
    env = "LDBENCH_CLIP_WEIGHTS"
    example = "openai/clip-vit-base-patch32"
    mean, std, norm_name = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "clip-norm"

    def _setup(self, config: Any) -> None:
        kind = getattr(config, "model_type", "")
        if kind == "clip":
            self.size = int(config.vision_config.image_size)
            self.dim = int(config.projection_dim)
        elif kind == "clip_vision_model":
            self.size = int(config.image_size)
            self.dim = int(config.hidden_size)
        else:
            raise UserError(f"{self.weights_path}: model_type {kind!r}, expected clip or clip_vision_model")
        self._full = kind == "clip"

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._full:
            out = self._model.get_image_features(pixel_values=pixels)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return self._model(pixel_values=pixels).pooler_output
