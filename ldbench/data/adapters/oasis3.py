"""oasis3: OASIS-3 T1 MRI sessions (NIfTI) + clinical table, longitudinal."""

from __future__ import annotations

import re
from collections import Counter

from ldbench.data import DATASETS
from ldbench.data.adapters.common import Entry, RealDataset, csv_rows, inside, parse_float, read_csv
from ldbench.data.adapters.labels import brain_caption, brain_counterfactual
from ldbench.errors import UserError

CDR_MAP = {0.0: "CN", 0.5: "MCI", 1.0: "AD", 2.0: "AD", 3.0: "AD"}
DX1_MAP = {"Cognitively normal": "CN", "AD Dementia": "AD", "uncertain dementia": "MCI",
           "0.5 in memory only": "MCI"}
SEX_MAP = {"1": "M", "2": "F", "M": "M", "F": "F", "Male": "M", "Female": "F", "male": "M", "female": "F"}


@DATASETS.register("oasis3")
class OASIS3(RealDataset):
    """OASIS-3: T1 MRI sessions (NIfTI) with the clinical diagnosis, age and sex; one axial slice each.

    Layout (ROOT = options.root):

        ROOT/clinical.csv                                   one row per MR session (join each session
                                                            to its nearest clinical assessment first)
        ROOT/images/{OASISID}/{OASISID}_MR_d{DDDD}.nii.gz   the session's T1 volume (.nii accepted), DDDD
                                                            = days since entry, zero-padded to 4 digits

    or an `image` column holding each volume's path relative to ROOT.

    Column mapping (OASIS-3 names, both the current and the older release spellings):
        OASISID (else Subject)                       -> subject
        days_to_visit (else the dNNNN of OASIS_session_label / label / MR ID) -> visit order, `days`
        age at visit (else ageAtEntry / AgeatEntry + days / 365.25) -> age
        cdr (else CDRTOT), with diagnosis_from="cdr" (default): 0 -> CN, 0.5 -> MCI, >= 1 -> AD
        dx1, with diagnosis_from="dx1": "Cognitively normal" -> CN, "AD Dementia" / "AD dem..." -> AD,
                                        "uncertain dementia", "0.5 in memory only" -> MCI
        GENDER (1 = male, 2 = female; else M/F)       -> sex M / F
    CDR is the default because dx1 has dozens of free-text values (other dementias) that have no
    CN/MCI/AD meaning; any value outside the maps is a problem naming the row.

    Preprocessing defaults as adni (canonical orientation, slice at 0.6 of the brain extent,
    percentile 0.5-99.5, area resize with pad). Captions/counterfactuals as synth-brain.
    """

    name = "oasis3"
    needs = "clinical.csv and images/{OASISID}/{OASISID}_MR_dDDDD.nii.gz T1 volumes under options.root (OASIS-3 DUA)"
    label_columns = ("diagnosis", "sex")
    csv_name = "clinical.csv"

    def __init__(self, root=None, diagnosis_from: str = "cdr", **common) -> None:
        if diagnosis_from not in ("cdr", "dx1"):
            raise UserError(f"oasis3: diagnosis_from must be 'cdr' or 'dx1', got {diagnosis_from!r}")
        self.diagnosis_from = diagnosis_from
        super().__init__(root, **common)

    def _extra_options(self) -> dict:
        return {"diagnosis_from": self.diagnosis_from}

    def index_files(self):
        return [self.root / self.csv_name]

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        dx_names = ("cdr", "CDRTOT", "CDR") if self.diagnosis_from == "cdr" else ("dx1",)
        parsed = read_csv(
            self.root / self.csv_name,
            required={"subject": ("OASISID", "Subject"), "sex": ("GENDER", "M/F", "Sex"), "dx": dx_names},
            optional={"days": ("days_to_visit", "Days", "days"),
                      "label": ("OASIS_session_label", "MR ID", "label", "MR_session"),
                      "age_visit": ("age at visit", "AgeatVisit", "age_at_visit"),
                      "age_entry": ("ageAtEntry", "AgeatEntry"), "image": ("image",)},
            problems=problems, fix=f"put the clinical table at {self.root / self.csv_name}",
        )
        if parsed is None:
            return []
        rows, col = parsed
        csv_path = self.root / self.csv_name
        if "days" not in col and "label" not in col:
            problems.append(f"{csv_path}: missing column 'days_to_visit' or 'OASIS_session_label'; add one")
            return []
        if "age_visit" not in col and "age_entry" not in col:
            problems.append(f"{csv_path}: missing column 'age at visit' or 'ageAtEntry'; add one")
            return []
        entries = []
        for where, row in csv_rows(rows, self.csv_name):
            entry = self._entry(where, row, col, problems)
            if entry is not None:
                entries.append(entry)
        return entries

    def _entry(self, where: str, row: dict, col: dict, problems: list[str]) -> Entry | None:
        """One clinical-table row as an Entry, or None (the reason added to `problems`)."""
        subject = row[col["subject"]]
        if not subject:
            problems.append(f"{where}: empty {col['subject']}; fill it in or remove the row")
            return None
        if "days" in col and row[col["days"]]:
            days_f = parse_float(row[col["days"]], where, col["days"], problems)
            if days_f is None:
                return None
            days = int(days_f)
        else:
            m = re.search(r"_d(\d+)$", row.get(col.get("label", ""), ""))
            if m is None:
                problems.append(f"{where}: no days_to_visit and no _dNNNN session label; fill one in")
                return None
            days = int(m.group(1))
        if "image" in col and row[col["image"]]:
            path = inside(self.root, row[col["image"]], where, problems)
            if path is None:
                return None
        else:
            stem = self.root / "images" / subject / f"{subject}_MR_d{days:04d}"
            path = next((p for p in (stem.with_name(stem.name + ".nii.gz"), stem.with_name(stem.name + ".nii"))
                         if p.is_file()), stem.with_name(stem.name + ".nii.gz"))
        if not path.is_file():
            problems.append(f"{where}: image {self._rel(path)} not found; add the volume or remove the row")
            return None
        diagnosis = self._diagnosis(row[col["dx"]], where, col["dx"], problems)
        sex = SEX_MAP.get(row[col["sex"]])
        if sex is None:
            problems.append(f"{where}: unknown {col['sex']} {row[col['sex']]!r} (valid: 1/2, M/F); fix the value")
            return None
        if diagnosis is None:
            return None
        if "age_visit" in col and row[col["age_visit"]]:
            age = parse_float(row[col["age_visit"]], where, col["age_visit"], problems)
        else:
            entry_age = parse_float(row.get(col.get("age_entry", ""), ""), where, "ageAtEntry", problems)
            age = None if entry_age is None else entry_age + days / 365.25
        if age is None:
            return None
        return Entry(where, path, subject, (days,),
                     {"age": round(age, 1), "diagnosis": diagnosis, "sex": sex, "days": days})

    def _diagnosis(self, value: str, where: str, column: str, problems: list[str]) -> str | None:
        if self.diagnosis_from == "cdr":
            try:
                dx = CDR_MAP.get(float(value))
            except ValueError:
                dx = None
            if dx is None:
                problems.append(f"{where}: unknown {column} {value!r} (valid: 0, 0.5, 1, 2, 3); fix the value")
            return dx
        dx = DX1_MAP.get(value) or ("AD" if value.startswith("AD dem") else None)
        if dx is None:
            problems.append(f"{where}: dx1 {value!r} has no CN/MCI/AD meaning; use diagnosis_from: cdr "
                            f"or remove the row")
        return dx

    def caption(self, row: dict) -> str:
        return brain_caption(row, self.name)

    def counterfactual_row(self, row: dict) -> dict:
        return brain_counterfactual(row, self.name)
