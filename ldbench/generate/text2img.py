"""text2img: one sample per split image, prompted with that image's own caption."""

from __future__ import annotations

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.generate import EDITORS, EditorOptions, EditPlan, all_rows
from ldbench.generate.sampling import text_to_latents
from ldbench.methods import prompt_for
from ldbench.models import make_sampler


class Text2Img:
    """Text-to-image from z_T ~ N(δ, I): prompting with each split image's own caption makes the
    generated set follow the split's attribute distribution (the paper's FID setting)."""

    name = "text2img"
    description = "text-to-image, one sample per split image, prompted with its caption"
    needs_source = False

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        n = len(table)
        return EditPlan(np.full(n, -1, dtype=np.int64), tuple(all_rows(table)), "", np.full(n, -1, dtype=np.int64),
                        ())

    def edit(self, parts: dict, dataset: Dataset, source_latents: torch.Tensor | None, source_rows: list[dict],
             target_rows: list[dict], drift: Drift, opts: EditorOptions,
             generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        prompts = [prompt_for(parts, dataset.caption(row)) for row in target_rows]
        scheduler = make_sampler(opts.sampler, parts["scheduler"])
        return text_to_latents(parts, scheduler, prompts, drift, opts.steps, opts.guidance_scale, generator), prompts


EDITORS.add("text2img", Text2Img())
