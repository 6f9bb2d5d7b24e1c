"""Real-data adapters on tiny fixture trees in each provider's layout (real NIfTI, DICOM, JPG, PNG and
16-bit PNG files): prepared, split and paired data; `datasets check` on good and broken copies."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ldbench.cli import main as cli_main
from ldbench.data import DATASETS, create_dataset
from ldbench.data.adapters import fixtures
from ldbench.data.adapters.labels import OBSERVATIONS
from ldbench.data.base import SPLITS
from ldbench.data.pairs import longitudinal_pairs
from ldbench.data.preprocess import POLICIES, Pipeline, make_policy
from ldbench.data.readers import read_image
from ldbench.errors import UserError

ADAPTERS = ("adni", "oasis3", "chexpert", "mimic-cxr-jpg", "manifest")


def _root(base: Path, name: str) -> Path:
    return base / ("CheXpert-v1.0-small" if name == "chexpert" else name)


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    return {name: fixtures.WRITERS[name](_root(base, name)) for name in ADAPTERS}


def _copy(trees, name: str, tmp_path: Path) -> Path:
    dst = _root(tmp_path, name)
    shutil.copytree(trees[name], dst)
    return dst


def _rewrite_csv(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


# --- good copies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTERS)
def test_prepare_reads_every_layout(trees, name):
    ds = create_dataset(name, root=str(trees[name]))
    prepared = ds.prepare()
    t = prepared.table
    n_subjects = 5 if name == "manifest" else 4
    assert t.images.shape == (2 * n_subjects, 64, 64) and t.images.dtype == np.float32
    assert np.isfinite(t.images).all() and t.images.min() >= 0.0 and t.images.max() <= 1.0
    assert all(t.images[i].std() > 0.05 for i in range(len(t)))  # real content, not blank
    assert prepared.counterfactuals is None
    assert set(t.attributes["split"]) <= set(SPLITS)
    assert len(set(t.attributes["subject"])) == n_subjects
    pairs = longitudinal_pairs(t)
    assert len(pairs) == n_subjects
    for a, b in pairs:
        assert t.attributes["subject"][a] == t.attributes["subject"][b]
        assert (t.attributes["visit"][a], t.attributes["visit"][b]) == (0, 1)
    # captions and counterfactual rows work on every row
    for i in range(len(t)):
        row = t.row(i)
        assert ds.caption(row)
        assert ds.counterfactual_row(row) != row if name != "manifest" else True
    summary, problems = ds.check()
    assert problems == []
    assert summary["subjects"] == n_subjects and summary["images"] == len(t)
    assert set(summary["splits"]) == set(SPLITS)


def test_attribute_mapping(trees):
    adni = create_dataset("adni", root=str(trees["adni"])).prepare().table
    assert set(adni.attributes["diagnosis"]) == {"CN", "MCI", "AD"}  # Dementia -> AD
    assert set(adni.attributes["sex"]) == {"F", "M"}
    assert adni.attributes["age"][1] == pytest.approx(71.0)  # AGE 70 + Years_bl 1
    oasis = create_dataset("oasis3", root=str(trees["oasis3"])).prepare().table
    assert list(oasis.attributes["diagnosis"][::2]) == ["CN", "MCI", "AD", "CN"]  # cdr 0 / 0.5 / 1
    assert oasis.attributes["age"][1] == pytest.approx(65.0 + 400 / 365.25, abs=0.05)
    # MIMIC: visits follow StudyDate, not study_id (the fixture's later study ids are earlier dates)
    ds = create_dataset("mimic-cxr-jpg", root=str(trees["mimic-cxr-jpg"]))
    entries = ds._entries([], Counter())
    first = {e.subject: e for e in sorted(entries, key=lambda e: e.order, reverse=True)}
    assert all(e.order[2].endswith("0001") for e in first.values())  # study 1 has the earlier date
    mimic = ds.prepare().table
    baseline = mimic.select(mimic.attributes["visit"] == 0)
    assert len(baseline) == 4


def test_uncertain_label_policy(tmp_path, trees):
    root = _copy(trees, "chexpert", tmp_path)
    col = 3 + 2 + OBSERVATIONS.index("Cardiomegaly")  # Path, Sex, Age, Frontal/Lateral, AP/PA, obs...

    def plant(lines):
        cells = lines[1].split(",")
        cells[col] = "-1.0"
        return [lines[0], ",".join(cells), *lines[2:]]

    _rewrite_csv(root / "train.csv", plant)
    values = {}
    for policy in ("zeros", "ones", "ignore"):
        t = create_dataset("chexpert", root=str(root), uncertain=policy).prepare().table
        values[policy] = int(t.attributes["cardiomegaly"][0])
    assert values == {"zeros": 0, "ones": 1, "ignore": -1}
    with pytest.raises(UserError, match="uncertain"):
        create_dataset("chexpert", root=str(root), uncertain="maybe")


def test_subject_level_splits_never_share_a_subject(tmp_path):
    root = fixtures.write_manifest(tmp_path / "m", n_subjects=24)
    t = create_dataset("manifest", root=str(root)).prepare().table
    owner: dict[str, str] = {}
    for subject, split in zip(t.attributes["subject"], t.attributes["split"], strict=True):
        assert owner.setdefault(str(subject), str(split)) == split
    assert set(owner.values()) == set(SPLITS)
    for a, b in longitudinal_pairs(t):
        assert t.attributes["split"][a] == t.attributes["split"][b]


def test_preprocessing_policies_are_in_the_cache_key(trees):
    a = create_dataset("manifest", root=str(trees["manifest"]))
    b = create_dataset("manifest", root=str(trees["manifest"]), intensity={"name": "percentile", "high": 99.0})
    c = create_dataset("manifest", root=str(trees["manifest"]), resize="bilinear")
    specs = [d.options() for d in (a, b, c)]
    assert specs[0]["preprocess"]["intensity"] == {"name": "percentile", "low": 0.5, "high": 99.5}
    assert specs[1]["preprocess"]["intensity"]["high"] == 99.0
    assert specs[2]["preprocess"]["resize"] == {"name": "bilinear", "fit": "pad"}
    assert len({str(s) for s in specs}) == 3
    with pytest.raises(UserError, match="unknown intensity policy"):
        make_policy("intensity", "nonsense")
    with pytest.raises(UserError, match="unknown parameter"):
        make_policy("slice", {"name": "index", "where": 3})
    with pytest.raises(UserError, match="must be a float"):
        make_policy("intensity", {"name": "window", "width": "wide"})


def test_sixteen_bit_and_orientation(tmp_path):
    rng = np.random.default_rng(1)
    img = fixtures.phantom_2d(rng, (40, 36))
    fixtures.write_png(tmp_path / "a16.png", img, bits=16)
    fixtures.write_png(tmp_path / "a8.png", img, bits=8)
    raw16, raw8 = read_image(tmp_path / "a16.png"), read_image(tmp_path / "a8.png")
    assert raw16.bit_depth == 16 and raw16.data.max() > 255  # never truncated to 8 bits
    pipe = Pipeline.build(intensity="range")
    out16, out8 = pipe.run(raw16, 32), pipe.run(raw8, 32)
    assert np.abs(out16 - out8).max() < 0.02
    # canonical orientation: the same anatomy stored LAS and RAS gives the same slice
    vol = fixtures.phantom_volume(rng)
    vol[-6:] += 300.0  # mark the patient's right side (high x in RAS+)
    fixtures.write_nifti(tmp_path / "ras.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))
    fixtures.write_nifti(tmp_path / "las.nii.gz", vol[::-1].copy(), np.diag([-2.0, 2.0, 2.0, 1.0]))
    pipe = Pipeline.build()
    ras, las = (pipe.run(read_image(tmp_path / f"{n}.nii.gz"), 32) for n in ("ras", "las"))
    assert np.abs(ras - las).max() < 1e-6
    assert ras[:, :16].mean() > ras[:, 16:].mean()  # radiological: the patient's right on the image left
    as_stored = Pipeline.build(orientation="none").run(read_image(tmp_path / "las.nii.gz"), 32)
    assert np.abs(as_stored - ras).max() > 0.1
    # the canonical policy reorients exactly like nibabel's as_closest_canonical (permuted, flipped axes)
    affine = np.array([[0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(vol, affine)
    ours = POLICIES["orientation"].get("canonical")(np.asarray(vol, np.float64), affine)
    assert np.array_equal(ours, np.asarray(nib.as_closest_canonical(img).dataobj))


def test_registry_and_needs():
    for name in ADAPTERS:
        assert DATASETS.get(name).needs
    assert "synth-cxr" in DATASETS


# --- broken copies: every problem named by file/row, exit 2, nothing cached -------------------------------


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _break_manifest(root: Path) -> dict[str, str]:
    """Plant one problem per kind; returns {what: text the problem line must contain}."""
    rows = (root / "manifest.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    rng = np.random.default_rng(3)
    _truncate(root / "images/s0/t0.png")  # truncated PNG
    _truncate(root / "images/s2/t0.dcm", 0.7)  # truncated DICOM (pixel data cut short)
    (root / "images/s1/t6.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")  # corrupt JPG
    nan = fixtures.phantom_volume(rng)
    nan[3, 3, 3] = np.nan
    fixtures.write_nifti(root / "images/s3/t6.nii.gz", nan)  # NaN voxel
    fixtures.write_nifti(root / "images/s3/t0.nii.gz", np.zeros((8, 8, 8, 3), np.float32))  # 4-D
    extra = [
        body[2],  # duplicate row
        "../escape.png,subjX,0,CN,70",  # path outside the root
        "/etc/passwd.png,subjY,0,CN,70",  # absolute path
        "images/s4/t0.png,subjZ,soon,CN,70",  # timepoint not a number
    ]
    (root / "manifest.csv").write_text("\n".join([header, *body, *extra]) + "\n")
    n = len(body) + 1  # line number of the last original row
    return {
        "truncated png": "manifest.csv row 2: images/s0/t0.png: unreadable or truncated png",
        "corrupt jpg": "manifest.csv row 5: images/s1/t6.jpg: unreadable",
        "truncated dicom": "manifest.csv row 6: images/s2/t0.dcm: unreadable",
        "nan": "images/s3/t6.nii.gz: 1 NaN/Inf values",
        "wrong dims": "images/s3/t0.nii.gz: wrong dimensionality",
        "duplicate": f"manifest.csv row {n + 1}: duplicate row",
        "outside": f"manifest.csv row {n + 2}: path '../escape.png' points outside the dataset root",
        "absolute": f"manifest.csv row {n + 3}: path '/etc/passwd.png' points outside",
        "timepoint": f"manifest.csv row {n + 4}: timepoint 'soon' is not a number",
    }


def test_check_names_every_planted_problem(tmp_path, trees, capsys):
    root = _copy(trees, "manifest", tmp_path)
    expected = _break_manifest(root)
    _, problems = create_dataset("manifest", root=str(root)).check()
    text = "\n".join(problems)
    for what, needle in expected.items():
        assert needle in text, (what, text)
    assert len(problems) == len(expected), text
    # the CLI prints them all and exits 2
    code = cli_main(["datasets", "check", "manifest", "--root", str(root)])
    out = capsys.readouterr().out
    assert code == 2
    for needle in expected.values():
        assert needle.split(": ")[-1][:25] in out.replace("\n", " ")
    # prepare() refuses with one UserError naming the first problems
    with pytest.raises(UserError, match="problem"):
        create_dataset("manifest", root=str(root)).prepare()


def test_check_cli_on_a_good_copy(trees, capsys):
    assert cli_main(["datasets", "check", "adni", "--root", str(trees["adni"])]) == 0
    out = capsys.readouterr().out
    for word in ("subjects: 4", "images: 8", "raw intensity range", "raw resolution", "train:", "diagnosis",
                 "no problems"):
        assert word in out
    assert cli_main(["datasets"]) == 0  # the listing still works
    assert "chexpert" in capsys.readouterr().out
    assert cli_main(["datasets", "check", "synth-brain", "--root", str(trees["adni"])]) == 2
    assert "embedded" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing_column", "unknown_dx", "truncated_nifti", "duplicate", "unknown_sex"])
def test_adni_problems(tmp_path, trees, case):
    root = _copy(trees, "adni", tmp_path)
    csv = root / "ADNIMERGE.csv"
    if case == "missing_column":
        _rewrite_csv(csv, lambda ls: [ls[0].replace("PTGENDER", "SEX"), *ls[1:]])
        needle = "ADNIMERGE.csv: missing column(s) 'PTGENDER'"
    elif case == "unknown_dx":
        _rewrite_csv(csv, lambda ls: [ls[0], ls[1].replace(",CN,", ",Healthy-ish,", 1), *ls[2:]])
        needle = "ADNIMERGE.csv row 2: unknown diagnosis 'Healthy-ish'"
    elif case == "truncated_nifti":
        _truncate(root / "images/011_S_0002/m12.nii.gz", 0.4)
        needle = "images/011_S_0002/m12.nii.gz: unreadable"
    elif case == "duplicate":
        _rewrite_csv(csv, lambda ls: [*ls, ls[1]])
        needle = "duplicate row"
    else:
        _rewrite_csv(csv, lambda ls: [ls[0], ls[1].replace("Female", "?"), *ls[2:]])
        needle = "ADNIMERGE.csv row 2: unknown PTGENDER '?'"
    _, problems = create_dataset("adni", root=str(root)).check()
    assert any(needle in p for p in problems), problems
    with pytest.raises(UserError, match="adni at"):
        create_dataset("adni", root=str(root)).prepare()


def test_chexpert_unknown_label_and_mimic_missing_csv(tmp_path, trees):
    root = _copy(trees, "chexpert", tmp_path)
    _rewrite_csv(root / "train.csv", lambda ls: [ls[0], ls[1].rsplit(",", 1)[0] + ",2.0", *ls[2:]])
    _, problems = create_dataset("chexpert", root=str(root)).check()
    assert any("train.csv row 2: unknown label value(s) Support Devices = '2.0'" in p for p in problems), problems
    mroot = _copy(trees, "mimic-cxr-jpg", tmp_path)
    (mroot / "mimic-cxr-2.0.0-chexpert.csv").unlink()
    _, problems = create_dataset("mimic-cxr-jpg", root=str(mroot)).check()
    assert problems and "mimic-cxr-2.0.0-chexpert.csv: file not found" in problems[0]


def test_empty_dataset(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "manifest.csv").write_text("path,subject_id,timepoint,diagnosis\n")
    _, problems = create_dataset("manifest", root=str(root)).check()
    assert len(problems) == 1 and "empty dataset" in problems[0]
    with pytest.raises(UserError, match="empty dataset"):
        create_dataset("manifest", root=str(root)).prepare()


def test_gzip_truncated_nifti_reader(tmp_path):
    fixtures.write_nifti(tmp_path / "v.nii.gz", fixtures.phantom_volume(np.random.default_rng(0)))
    raw = gzip.decompress((tmp_path / "v.nii.gz").read_bytes())
    (tmp_path / "v.nii").write_bytes(raw[: len(raw) // 2])  # truncated uncompressed NIfTI
    from ldbench.data.readers import ImageError

    with pytest.raises(ImageError, match="unreadable"):
        read_image(tmp_path / "v.nii")
    assert isinstance(nib.load(str(tmp_path / "v.nii.gz")), nib.Nifti1Image)


def test_bad_copy_leaves_nothing_cached(tmp_path, trees):
    from ldbench.runner import stages
    from ldbench.store import Store

    root = _copy(trees, "manifest", tmp_path)
    _break_manifest(root)
    cache = tmp_path / "cache"
    ctx = stages.Context(store=Store(cache), quiet=True)
    with pytest.raises(UserError):
        stages.dataset_stage(ctx, create_dataset("manifest", root=str(root)))
    leftovers = [p for p in cache.rglob("*") if p.is_file() or (p.is_dir() and p.name.startswith(".tmp"))]
    assert not [p for p in leftovers if "dataset" in p.parts and not p.name.endswith(".lock")], leftovers
    # a good copy is cached once and then found
    good = create_dataset("manifest", root=str(trees["manifest"]))
    art = stages.dataset_stage(ctx, good)
    again = stages.dataset_stage(ctx, create_dataset("manifest", root=str(trees["manifest"])))
    assert art.path == again.path and again.cached


def test_a_replaced_image_under_an_unchanged_csv_changes_the_cache_key(tmp_path):
    root = fixtures.write_manifest(tmp_path / "m", n_subjects=4)
    before = create_dataset("manifest", root=str(root)).options()
    image = sorted(p for p in root.rglob("*.png"))[0]
    fixtures.write_png(image, np.ones((40, 36)) * 0.5)
    after = create_dataset("manifest", root=str(root)).options()
    assert before["index_sha256"] == after["index_sha256"]
    assert before["images_fingerprint"] != after["images_fingerprint"]


def test_sixteen_bit_png_with_small_values_is_read_as_sixteen_bit(tmp_path):
    """A dark 16-bit PNG (every value <= 255) must still be scaled by 65535, not taken for 8-bit."""
    from ldbench.data.readers import read_image

    dark = np.full((8, 8), 200 / 65535.0)
    fixtures.write_png(tmp_path / "dark16.png", dark, bits=16)
    raw = read_image(tmp_path / "dark16.png")
    assert raw.bit_depth == 16 and raw.data.max() == 200
