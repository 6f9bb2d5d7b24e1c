"""What the chest X-ray adapters (chexpert, mimic-cxr-jpg) share: label options, captions, one view per study."""

from __future__ import annotations

from ldbench.data.adapters.common import Entry, RealDataset
from ldbench.data.adapters.labels import (
    FINDING_COLUMNS,
    OBSERVATIONS,
    UNCERTAIN_POLICIES,
    cxr_caption,
    cxr_counterfactual,
    cxr_label,
)
from ldbench.errors import UserError

VIEW_CHOICES = ("frontal", "all")


class CXRDataset(RealDataset):
    """Chest X-ray adapters: uncertain-label policy, view filter, counterfactual finding."""

    label_columns = ("cardiomegaly", "pleural_effusion", "consolidation", "no_finding")
    pipeline_defaults = {"intensity": {"name": "percentile", "low": 0.5, "high": 99.5},
                         "resize": {"name": "area", "fit": "crop"}}

    def __init__(self, root=None, uncertain: str = "zeros", views: str = "frontal",
                 counterfactual: str = "cardiomegaly", **common) -> None:
        if uncertain not in UNCERTAIN_POLICIES:
            raise UserError(f"{self.name}: uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}")
        if views not in VIEW_CHOICES:
            raise UserError(f"{self.name}: views must be one of {', '.join(VIEW_CHOICES)}, got {views!r}")
        if counterfactual not in FINDING_COLUMNS or counterfactual == "no_finding":
            raise UserError(f"{self.name}: counterfactual must be a finding column "
                            f"({', '.join(c for c in FINDING_COLUMNS if c != 'no_finding')}), got {counterfactual!r}")
        self.uncertain = uncertain
        self.views = views
        self.counterfactual = counterfactual
        super().__init__(root, **common)

    def _extra_options(self) -> dict:
        return {"uncertain": self.uncertain, "views": self.views, "counterfactual": self.counterfactual}

    def _labels(self, row: dict, where: str, problems: list[str]) -> dict | None:
        out = {}
        bad = []
        for obs, col in zip(OBSERVATIONS, FINDING_COLUMNS, strict=True):
            value = cxr_label(row[obs], self.uncertain)
            if value is None:
                bad.append(f"{obs} = {row[obs]!r}")
            out[col] = value
        if bad:
            problems.append(f"{where}: unknown label value(s) {', '.join(bad)} (valid: 1.0, 0.0, -1.0, empty); "
                            f"fix the values")
            return None
        return out

    @staticmethod
    def one_per_study(entries: list[Entry], skipped, reason: str) -> list[Entry]:
        """The first entry (by order) of each (subject, study); order[:-1] identifies the study."""
        best: dict[tuple, Entry] = {}
        for e in entries:
            key = (e.subject, e.order[:-1])
            if key not in best or e.order < best[key].order:
                if key in best:
                    skipped[reason] += 1
                best[key] = e
            else:
                skipped[reason] += 1
        return list(best.values())

    def caption(self, row: dict) -> str:
        return cxr_caption(row)

    def counterfactual_row(self, row: dict) -> dict:
        return cxr_counterfactual(row, self.counterfactual)
