"""sdedit: the counterfactual edit of every split image by SDEdit (Meng et al., ICLR 2022)."""

from __future__ import annotations

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.generate import EDITORS, EditorOptions, EditPlan, all_rows
from ldbench.generate.sampling import edit_latents
from ldbench.methods import prompt_for
from ldbench.models import make_sampler


def counterfactual_plan(dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
    """Every row edited to dataset.counterfactual_row(row); the truth is the dataset's counterfactual
    rendering at the same index when it has one. `changes`: the attributes counterfactual_row sets
    (read off the first row: a dataset changes the same attributes for every row)."""
    rows = all_rows(table)
    targets = tuple(dataset.counterfactual_row(r) for r in rows)
    changes = tuple(k for k in targets[0] if rows[0].get(k) != targets[0][k]) if rows else ()
    index = np.arange(len(rows), dtype=np.int64)
    truth = index.copy() if has_counterfactuals else np.full(len(rows), -1, dtype=np.int64)
    return EditPlan(index, targets, "counterfactuals" if has_counterfactuals else "", truth, changes)


class SDEdit:
    """The source latent is noised to `strength` (forward process under the drift, ε' = ε + δ) and
    denoised with the target caption (e.g. the diagnosis flipped)."""

    name = "sdedit"
    description = "SDEdit: noise the source to `strength`, denoise with the counterfactual caption"
    needs_source = True

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        return counterfactual_plan(dataset, table, has_counterfactuals)

    def edit(self, parts: dict, dataset: Dataset, source_latents: torch.Tensor | None, source_rows: list[dict],
             target_rows: list[dict], drift: Drift, opts: EditorOptions,
             generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        prompts = [prompt_for(parts, dataset.caption(row)) for row in target_rows]
        scheduler = make_sampler(opts.sampler, parts["scheduler"])
        z = edit_latents(parts, scheduler, source_latents, prompts, drift, opts.steps, opts.strength,
                         opts.guidance_scale, generator)
        return z, prompts


EDITORS.add("sdedit", SDEdit())
