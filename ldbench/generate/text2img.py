"""text2img: one sample per split image, prompted with that image's own caption."""

from __future__ import annotations

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.generate import EDITORS, EditBatch, EditPlan, SamplingOptions, all_rows
from ldbench.models import Components
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import text_to_latents
from ldbench.models.text import prompt_for


class Text2Img:
    """Text-to-image from z_T ~ N(δ, I): prompting with each split image's own caption makes the
    generated set follow the split's attribute distribution (the paper's FID setting)."""

    name = "text2img"
    description = "text-to-image, one sample per split image, prompted with its caption"
    needs_source = False
    options_class = SamplingOptions

    def sampling_steps(self, opts: SamplingOptions) -> float:
        return opts.steps  # the full chain

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        n = len(table)
        return EditPlan(np.full(n, -1, dtype=np.int64), tuple(all_rows(table)), "", np.full(n, -1, dtype=np.int64),
                        ())

    def edit(self, parts: Components, dataset: Dataset, batch: EditBatch) -> tuple[torch.Tensor, list[str]]:
        prompts = [prompt_for(parts, dataset.caption(row)) for row in batch.target_rows]
        opts = batch.options
        scheduler = make_sampler(opts.sampler, parts.scheduler)
        z = text_to_latents(parts, scheduler, prompts, batch.drift, opts.steps, opts.guidance_scale, batch.generator)
        return z, prompts


EDITORS.add("text2img", Text2Img())
