"""Longitudinal pairs: (baseline, follow-up) rows of the same subject."""

from __future__ import annotations

import numpy as np

from ldbench.data.base import ImageTable


def longitudinal_pairs(table: ImageTable, all_followups: bool = True) -> list[tuple[int, int]]:
    """(baseline_row, followup_row) index pairs: per subject, its earliest visit paired with every later
    visit (or only the next one when all_followups is False). Subjects with one visit give no pair.
    Both rows of a pair always share a subject and hence a split, and, for tables with a `slice` column
    (several axial slices per volume), the slice position. Sorted by (subject, slice, follow-up visit).
    """
    subjects = np.asarray(table.attributes["subject"]).astype(str)
    if "slice" in table.attributes:  # several slices per visit: pair the same slice position across visits
        subjects = np.char.add(np.char.add(subjects, "\0"), np.asarray(table.attributes["slice"]).astype(str))
    visits = np.asarray(table.attributes["visit"])
    order = np.lexsort((visits, subjects))
    pairs: list[tuple[int, int]] = []
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and subjects[order[end]] == subjects[order[start]]:
            end += 1
        rows = order[start:end]
        later = rows[1:] if all_followups else rows[1:2]
        pairs.extend((int(rows[0]), int(r)) for r in later if visits[r] != visits[rows[0]])
        start = end
    return pairs
