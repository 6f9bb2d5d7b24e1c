"""chexpert: the CheXpert chest radiographs (JPG) with the 14 observation labels."""

from __future__ import annotations

import re
from collections import Counter

from ldbench.data import DATASETS
from ldbench.data.adapters.common import Entry, csv_rows, duplicates, inside, parse_float, read_csv
from ldbench.data.adapters.cxr_common import CXRDataset
from ldbench.data.adapters.labels import OBSERVATIONS

_PATH = re.compile(r"patient(\d+)/study(\d+)/view(\d+)_(frontal|lateral)\.jpe?g$", re.IGNORECASE)
SEX_MAP = {"Male": "M", "Female": "F", "Unknown": "U"}


@DATASETS.register("chexpert")
class CheXpert(CXRDataset):
    """CheXpert: frontal chest radiographs (JPG) with sex, age, view and the 14 observations.

    Layout (ROOT = options.root = the CheXpert-v1.0 or CheXpert-v1.0-small directory):

        ROOT/train.csv, ROOT/valid.csv     as shipped (at least one of them; both are read)
        ROOT/train/patient00001/study1/view1_frontal.jpg  ...

    Columns: Path (e.g. "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"; the first
    component, the dataset directory's name, is dropped, the rest is relative to ROOT), Sex
    (Male / Female / Unknown -> sex M / F / U), Age -> age, Frontal/Lateral, AP/PA -> view (AP, PA, or
    "lateral"), and the 14 observations (No Finding, Enlarged Cardiomediastinum, Cardiomegaly, Lung
    Opacity, Lung Lesion, Edema, Consolidation, Pneumonia, Atelectasis, Pneumothorax, Pleural Effusion,
    Pleural Other, Fracture, Support Devices) -> int columns no_finding, ..., support_devices.
    subject = patientNNNNN, visit order = study number (CheXpert numbers a patient's studies in time
    order); with views="frontal" (default) the lowest-numbered frontal view of each study is kept.

    Label values: 1.0 positive, 0.0 negative, empty (not mentioned) -> 0, -1.0 uncertain -> by the
    `uncertain` option:
        zeros (default): uncertain -> 0 ("U-Zeros" of Irvin et al. 2019). Counterfactual pairs are
            conditioned on a finding being present, so the positive class should be precise: a report
            that only hedges ("cannot exclude cardiomegaly") then counts as negative, the same as an
            unmentioned finding, and the labels stay binary for captions.
        ones: uncertain -> 1 ("U-Ones"; higher recall, noisier positives).
        ignore: kept as -1; captions leave the finding out and the counterfactual of a -1 row keeps -1.
    Other values are a problem naming the row. counterfactual (default cardiomegaly): the finding the
    counterfactual caption flips. No ground-truth counterfactual images.

    Preprocessing defaults: channels luminance, intensity percentile 0.5-99.5, resize area with fit crop
    (centre square; CheXpert images are close to square).
    """

    name = "chexpert"
    needs = "the CheXpert directory (train.csv / valid.csv and the JPGs) as options.root (Stanford AIMI licence)"

    def index_files(self):
        return [self.root / n for n in ("train.csv", "valid.csv")]

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        csvs = [p for p in self.index_files() if p.is_file()]
        if not csvs:
            problems.append(f"{self.root}: neither train.csv nor valid.csv found; point options.root at the "
                            f"CheXpert-v1.0(-small) directory")
            return []
        entries = []
        for csv_path in csvs:
            parsed = read_csv(csv_path, required={"path": ("Path",), "sex": ("Sex",), "age": ("Age",),
                                                  "fl": ("Frontal/Lateral",),
                                                  **{o: (o,) for o in OBSERVATIONS}},
                              optional={"appa": ("AP/PA",)}, problems=problems)
            if parsed is None:
                continue
            rows, col = parsed
            for where, row in csv_rows(rows, csv_path.name):
                rel = row[col["path"]]
                parts = rel.replace("\\", "/").split("/")
                if len(parts) > 1 and (parts[0] == self.root.name or parts[0].startswith("CheXpert-v1.0")):
                    rel = "/".join(parts[1:])
                m = _PATH.search(row[col["path"]].replace("\\", "/"))
                if m is None:
                    problems.append(f"{where}: Path {row[col['path']]!r} is not .../patientN/studyN/viewN_frontal|"
                                    f"lateral.jpg; fix the path")
                    continue
                path = inside(self.root, rel, where, problems)
                if path is None:
                    continue
                frontal = row[col["fl"]]
                if frontal not in ("Frontal", "Lateral"):
                    problems.append(f"{where}: Frontal/Lateral = {frontal!r} (valid: Frontal, Lateral); fix it")
                    continue
                if self.views == "frontal" and frontal != "Frontal":
                    skipped["lateral views"] += 1
                    continue
                sex = SEX_MAP.get(row[col["sex"]])
                if sex is None:
                    problems.append(f"{where}: unknown Sex {row[col['sex']]!r} (valid: Male, Female, Unknown); fix it")
                    continue
                age = parse_float(row[col["age"]], where, "Age", problems)
                labels = self._labels(row, where, problems)
                if age is None or labels is None:
                    continue
                view = row.get(col.get("appa", ""), "") if frontal == "Frontal" else "lateral"
                entries.append(Entry(where, path, f"patient{m.group(1)}", (int(m.group(2)), int(m.group(3))),
                                     {"sex": sex, "age": age, "view": view or "unknown", **labels}))
        entries = duplicates(entries, problems)
        if self.views == "frontal":
            entries = self.one_per_study(entries, skipped, "extra frontal views of a study")
        return entries
