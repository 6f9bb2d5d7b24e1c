"""adni: ADNI T1 MRI volumes (NIfTI) + the ADNIMERGE clinical table, longitudinal."""

from __future__ import annotations

import re
from collections import Counter

from ldbench.data import DATASETS
from ldbench.data.adapters.common import Entry, RealDataset, csv_rows, inside, parse_float, read_csv
from ldbench.data.adapters.labels import brain_caption, brain_counterfactual

# ADNIMERGE diagnosis values -> CN / MCI / AD
DX_MAP = {"CN": "CN", "SMC": "CN", "EMCI": "MCI", "LMCI": "MCI", "MCI": "MCI", "Dementia": "AD", "AD": "AD"}
SEX_MAP = {"Male": "M", "Female": "F"}


@DATASETS.register("adni")
class ADNI(RealDataset):
    """ADNI: T1 MRI volumes (NIfTI) with ADNIMERGE diagnosis, age and sex; one axial slice per visit.

    Layout (ROOT = options.root):

        ROOT/ADNIMERGE.csv                     the ADNIMERGE table as downloaded from LONI IDA (or a subset)
        ROOT/images/{PTID}/{VISCODE}.nii.gz    one T1 volume per imaged visit (.nii also accepted), e.g.
                                               images/011_S_0002/bl.nii.gz, images/011_S_0002/m06.nii.gz

    or an `image` column in ADNIMERGE.csv holding each volume's path relative to ROOT. Rows whose volume
    does not exist are skipped (ADNIMERGE lists clinical-only visits); they are counted by `check`.

    Column mapping (ADNIMERGE name -> ldbench attribute):
        PTID (else RID)   -> subject
        VISCODE           -> visit order (bl = month 0, mNN = month NN); also kept as `viscode`
        AGE (+ Years_bl)  -> age at the visit (AGE is the baseline age; without Years_bl, + months / 12)
        DX (else DX_bl at the baseline visit) -> diagnosis: CN, SMC -> CN; EMCI, LMCI, MCI -> MCI;
                             Dementia, AD -> AD; rows with an empty diagnosis are skipped (counted)
        PTGENDER          -> sex: Male -> M, Female -> F
    Any other diagnosis or sex value is a problem naming the row.

    Preprocessing defaults: orientation canonical, slice relative at 0.6 of the brain's z extent
    (lateral ventricles, like synth-brain), intensity percentile 0.5-99.5, resize area with fit pad.
    Several slices per visit: slice {name: relative-range, start, stop, count}, each image then has its
    position in a `slice` attribute.
    Captions and counterfactuals as synth-brain ("brain mri, 72 year old, alzheimer's disease";
    diagnosis flipped CN <-> AD, MCI -> AD). No ground-truth counterfactual images.
    """

    name = "adni"
    needs = "ADNIMERGE.csv and images/{PTID}/{VISCODE}.nii.gz T1 volumes under options.root (ADNI data use agreement)"
    label_columns = ("diagnosis", "sex")
    csv_name = "ADNIMERGE.csv"

    def index_files(self):
        return [self.root / self.csv_name]

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        parsed = read_csv(
            self.root / self.csv_name,
            required={"subject": ("PTID", "RID"), "viscode": ("VISCODE",), "age": ("AGE",), "sex": ("PTGENDER",)},
            optional={"dx": ("DX",), "dx_bl": ("DX_bl",), "years_bl": ("Years_bl",), "image": ("image",)},
            problems=problems, fix=f"download ADNIMERGE.csv and put it at {self.root}",
        )
        if parsed is None:
            return []
        rows, col = parsed
        if "dx" not in col and "dx_bl" not in col:
            problems.append(f"{self.root / self.csv_name}: missing column 'DX' or 'DX_bl'; add the diagnosis column")
            return []
        entries = []
        for where, row in csv_rows(rows, self.csv_name):
            entry = self._entry(where, row, col, problems, skipped)
            if entry is not None:
                entries.append(entry)
        return entries

    def _entry(self, where: str, row: dict, col: dict, problems: list[str], skipped: Counter) -> Entry | None:
        """One ADNIMERGE row as an Entry, or None (the reason added to `problems` or counted in `skipped`)."""
        subject, viscode = row[col["subject"]], row[col["viscode"]]
        if not subject:
            problems.append(f"{where}: empty {col['subject']}; fill it in or remove the row")
            return None
        m = re.fullmatch(r"bl|m(\d+)", viscode)
        if m is None:
            problems.append(f"{where}: unknown VISCODE {viscode!r} (want bl or mNN); fix it or remove the row")
            return None
        months = int(m.group(1) or 0)
        if "image" in col and row[col["image"]]:
            path = inside(self.root, row[col["image"]], where, problems)
            if path is None:
                return None
            if not path.is_file():
                problems.append(f"{where}: image {row[col['image']]} not found; fix the path or remove the row")
                return None
        else:
            base = self.root / "images" / subject / viscode
            path = next((p for p in (base.with_name(viscode + ".nii.gz"), base.with_name(viscode + ".nii"))
                         if p.is_file()), None)
            if path is None:
                skipped["rows without an image file"] += 1
                return None
        dx = row.get(col.get("dx", ""), "") or (row.get(col.get("dx_bl", ""), "") if months == 0 else "")
        if not dx:
            skipped["imaged rows without a diagnosis"] += 1
            return None
        if dx not in DX_MAP:
            problems.append(f"{where}: unknown diagnosis {dx!r} (valid: {', '.join(DX_MAP)}); fix the value")
            return None
        sex = SEX_MAP.get(row[col["sex"]])
        if sex is None:
            problems.append(f"{where}: unknown PTGENDER {row[col['sex']]!r} (valid: Male, Female); fix the value")
            return None
        age = parse_float(row[col["age"]], where, "AGE", problems)
        if age is None:
            return None
        if "years_bl" in col and row[col["years_bl"]]:
            years = parse_float(row[col["years_bl"]], where, "Years_bl", problems)
            if years is None:
                return None
        else:
            years = months / 12.0
        return Entry(where, path, subject, (months,),
                     {"age": round(age + years, 1), "diagnosis": DX_MAP[dx], "sex": sex,
                      "viscode": viscode})

    def caption(self, row: dict) -> str:
        return brain_caption(row, self.name)

    def counterfactual_row(self, row: dict) -> dict:
        return brain_counterfactual(row, self.name)
