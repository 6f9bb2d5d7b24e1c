"""sdedit: the counterfactual edit of every split image by SDEdit (Meng et al., ICLR 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditBatch, EditPlan, SamplingOptions, all_rows, check_numbers
from ldbench.models import Components
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import Chain, edit_latents
from ldbench.models.text import prompt_for


@dataclass(frozen=True)
class StrengthOptions(SamplingOptions):
    """SamplingOptions and (sdedit, inversion-edit):

    strength             fraction of the chain re-run from the source (1.0 = from pure noise / a full
                         inversion to z_T).
    """

    strength: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(self, non_negative=("strength",))
        if self.strength > 1:
            raise UserError(f"editor option strength must be in [0, 1], got {self.strength!r}")

    @property
    def chain(self) -> Chain:
        return Chain(self.steps, self.strength, self.guidance_scale)


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
    options_class = StrengthOptions

    def sampling_steps(self, opts: StrengthOptions) -> float:
        return max(1, round(opts.steps * opts.strength))  # the part of the chain it re-runs

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        return counterfactual_plan(dataset, table, has_counterfactuals)

    def edit(self, parts: Components, dataset: Dataset, batch: EditBatch) -> tuple[torch.Tensor, list[str]]:
        prompts = [prompt_for(parts, dataset.caption(row)) for row in batch.target_rows]
        opts: StrengthOptions = batch.options
        scheduler = make_sampler(opts.sampler, parts.scheduler)
        z = edit_latents(parts, scheduler, batch.source_latents, prompts, batch.drift, opts.chain, batch.generator)
        return z, prompts


EDITORS.add("sdedit", SDEdit())
