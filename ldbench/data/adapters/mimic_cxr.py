"""mimic-cxr-jpg: MIMIC-CXR-JPG v2.0.0 chest radiographs with CheXpert-labeler findings, longitudinal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ldbench.data import DATASETS
from ldbench.data.adapters.common import Entry, csv_rows, duplicates, read_csv
from ldbench.data.adapters.cxr_common import CXRDataset
from ldbench.data.adapters.labels import OBSERVATIONS

FRONTAL = ("PA", "AP")


@DATASETS.register("mimic-cxr-jpg")
class MIMICCXRJPG(CXRDataset):
    """MIMIC-CXR-JPG: frontal chest radiographs (JPG) with the 14 CheXpert-labeler findings, in time order.

    Layout (ROOT = options.root = the mimic-cxr-jpg/2.0.0 directory as downloaded from PhysioNet):

        ROOT/mimic-cxr-2.0.0-metadata.csv(.gz)   dicom_id, subject_id, study_id, ViewPosition,
                                                 StudyDate (YYYYMMDD), StudyTime (HHMMSS[.ffffff]), ...
        ROOT/mimic-cxr-2.0.0-chexpert.csv(.gz)   subject_id, study_id and the 14 observations
        ROOT/files/p{first 2 digits of subject_id}/p{subject_id}/s{study_id}/{dicom_id}.jpg

    subject = subject_id; visit order = (StudyDate, StudyTime); view = ViewPosition. With views="frontal"
    (default) only PA/AP images are used and the first (by dicom_id) of each study is kept. Metadata rows
    whose JPG is absent (partial downloads) and studies without a chexpert row are skipped and counted by
    `check`. Labels and the `uncertain` policy (default zeros) as chexpert. MIMIC-CXR-JPG carries no age
    or sex (those are in MIMIC-IV `patients`), so there are no age/sex attributes.
    """

    name = "mimic-cxr-jpg"
    needs = ("mimic-cxr-2.0.0-metadata.csv, mimic-cxr-2.0.0-chexpert.csv and files/pXX/pSUBJECT/sSTUDY/*.jpg "
             "under options.root (PhysioNet credentialed access)")

    def _csv(self, stem: str) -> Path:
        plain = self.root / f"{stem}.csv"
        gz = self.root / f"{stem}.csv.gz"
        return gz if gz.is_file() and not plain.is_file() else plain

    def index_files(self):
        return [self._csv("mimic-cxr-2.0.0-metadata"), self._csv("mimic-cxr-2.0.0-chexpert")]

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        meta_path, labels_path = self.index_files()
        meta = read_csv(meta_path, {"dicom_id": ("dicom_id",), "subject": ("subject_id",), "study": ("study_id",),
                                    "view": ("ViewPosition",), "date": ("StudyDate",), "time": ("StudyTime",)},
                        problems, fix="download it from PhysioNet (mimic-cxr-jpg 2.0.0) into the root")
        labels = read_csv(labels_path, {"subject": ("subject_id",), "study": ("study_id",),
                                        **{o: (o,) for o in OBSERVATIONS}},
                          problems, fix="download it from PhysioNet (mimic-cxr-jpg 2.0.0) into the root")
        if meta is None or labels is None:
            return []
        by_study: dict[tuple[str, str], dict] = {}
        for where, row in csv_rows(labels[0], labels_path.name):
            key = (row["subject_id"], row["study_id"])
            if key in by_study:
                problems.append(f"{where}: duplicate row: study s{key[1]} of p{key[0]} already labelled at "
                                f"{by_study[key]['where']}; remove one")
                continue
            found = self._labels(row, where, problems)
            if found is not None:
                by_study[key] = {"where": where, "labels": found}
        entries = []
        for where, row in csv_rows(meta[0], meta_path.name):
            subject, study, dicom_id = row["subject_id"], row["study_id"], row["dicom_id"]
            if not (subject.isdigit() and study.isdigit() and dicom_id) or "/" in dicom_id or ".." in dicom_id:
                problems.append(f"{where}: bad subject_id / study_id / dicom_id ({subject!r}, {study!r}, "
                                f"{dicom_id!r}); fix the row")
                continue
            view = row["ViewPosition"]
            if self.views == "frontal" and view not in FRONTAL:
                skipped["non-frontal views"] += 1
                continue
            try:
                date = int(row["StudyDate"])
                time = float(row["StudyTime"] or 0)
            except ValueError:
                problems.append(f"{where}: StudyDate {row['StudyDate']!r} / StudyTime {row['StudyTime']!r} "
                                f"not YYYYMMDD / HHMMSS; fix them")
                continue
            path = self.root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg"
            if not path.is_file():
                skipped["metadata rows without a JPG"] += 1
                continue
            found = by_study.get((subject, study))
            if found is None:
                skipped["images of studies without labels"] += 1
                continue
            entries.append(Entry(where, path, subject, (date, time, study, dicom_id),
                                 {"view": view or "unknown", **found["labels"]}))
        entries = duplicates(entries, problems)
        if self.views == "frontal":
            entries = self.one_per_study([Entry(e.where, e.path, e.subject, e.order, e.attrs) for e in entries],
                                         skipped, "extra frontal images of a study")
        return entries
