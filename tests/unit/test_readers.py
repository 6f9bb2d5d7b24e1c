"""The one image reader (ldbench.data.readers) as seen by both its users: the dataset adapters (RawImage,
stored values) and the `ldbench fid` image folders (ldbench.data.images: float64 in [0, 1], gray)."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldbench.data import images, readers
from ldbench.data.adapters import fixtures
from ldbench.errors import UserError


def _png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR colour type 2, depth 16."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[r].astype(">u2").tobytes() for r in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_dark_sixteen_bit_png_is_sixteen_bit_for_both_users(tmp_path):
    """Every value <= 255: only the PNG header says 16-bit; both users must scale by 65535."""
    fixtures.write_png(tmp_path / "dark.png", np.full((6, 5), 200 / 65535.0), bits=16)
    raw = readers.read_image(tmp_path / "dark.png")
    assert raw.bit_depth == 16 and raw.data.max() == 200
    np.testing.assert_array_equal(images.read_image(tmp_path / "dark.png"), np.full((6, 5), 200 / 65535.0))


def test_sixteen_bit_colour_png_is_refused_not_truncated(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0] = 40000
    _png16_rgb(tmp_path / "c16.png", rgb)
    with pytest.raises(readers.ImageError, match="16-bit colour PNG"):
        readers.read_image(tmp_path / "c16.png")
    with pytest.raises(UserError) as info:
        images.read_image(tmp_path / "c16.png")
    assert str(info.value).startswith(str(tmp_path / "c16.png")) and "save it as 16-bit grayscale" in str(info.value)


def test_folder_values_follow_the_shared_decoding(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "g.png"), gray / 255.0)
    # palette with a transparent entry: read via RGBA without Pillow's transparency warning; gray = RGB mean
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([30, 60, 90, 200, 100, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = images.read_image(tmp_path / "p.png")
    np.testing.assert_allclose(x, [[60 / 255, 100 / 255], [100 / 255, 60 / 255]])
    # gray + alpha: alpha dropped, for both users
    la = np.stack([gray, np.full_like(gray, 7)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "la.png"), gray / 255.0)
    assert readers.read_image(tmp_path / "la.png").data.shape == (5, 7)
    # bilevel: 0 / 1
    Image.fromarray(gray > 128).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "b.png"), (gray > 128).astype(float))


def test_bad_files_give_one_line_naming_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for fn in (images.read_image, images._image_size):
        with pytest.raises(UserError) as info:
            fn(tmp_path / "bad.png")
        msg = str(info.value)
        assert msg.startswith(str(tmp_path / "bad.png") + ": unreadable") and "\n" not in msg, msg
    fixtures.write_png(tmp_path / "ok.png", np.ones((8, 8)) * 0.5)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(readers.ImageError, match="unreadable or truncated png"):
        readers.read_image(tmp_path / "cut.png")
    with pytest.raises(UserError, match="cut.png: unreadable or truncated png"):
        images.read_image(tmp_path / "cut.png")


def test_float_images_are_not_an_image_folder_mode(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32), "F").save(tmp_path / "f.tiff")
    (tmp_path / "f.tiff").rename(tmp_path / "f.png")  # a TIFF named .png: Pillow opens by content
    with pytest.raises(UserError, match="unsupported image mode 'F'"):
        images.read_image(tmp_path / "f.png")


# --- reading on several threads: same results, same first error, as one thread ---------------------------


def test_threaded_reading_is_deterministic(tmp_path):
    from ldbench.data import create_dataset

    root = fixtures.write_manifest(tmp_path / "m", n_subjects=6)
    one = create_dataset("manifest", root=str(root), workers=1).prepare().table
    many = create_dataset("manifest", root=str(root), workers=3).prepare().table
    assert one.content_hash() == many.content_hash()
    # a broken copy: the same problems, in the same order
    data = (root / "images/s0/t0.png").read_bytes()
    (root / "images/s0/t0.png").write_bytes(data[: len(data) // 2])
    (root / "images/s1/t6.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    p1 = create_dataset("manifest", root=str(root), workers=1).check()[1]
    p3 = create_dataset("manifest", root=str(root), workers=3).check()[1]
    assert p1 == p3 and len(p1) == 2


def test_threaded_image_folder_matches_one_thread_and_reports_the_first_bad_file(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(7):
        fixtures.write_png(tmp_path / f"{i:02d}.png", rng.random((9, 8)), bits=16 if i % 2 else 8)
    one = [b for b in images.ImageFolder(tmp_path, workers=1).iter_batches(3)]
    many = [b for b in images.ImageFolder(tmp_path, workers=4).iter_batches(3)]
    assert [b.shape for b in many] == [(3, 9, 8), (3, 9, 8), (1, 9, 8)]
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
    for name in ("04.png", "05.png"):  # both corrupt, same header size: the first in order is named
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) - 40])
    with pytest.raises(UserError, match="04.png: unreadable"):
        images.ImageFolder(tmp_path, workers=4).load()


@pytest.mark.parametrize("bad", [0, -1, 2.0, "4", True])
def test_workers_must_be_a_positive_integer(tmp_path, bad):
    from ldbench.data import create_dataset

    with pytest.raises(UserError, match=f"workers must be an integer >= 1.*got {bad!r}"):
        create_dataset("manifest", root=str(tmp_path), workers=bad)
    with pytest.raises(UserError, match="workers must be an integer"):
        images.ImageFolder(tmp_path, workers=bad)


def test_workers_is_not_part_of_the_cache_key(tmp_path):
    from ldbench.data import create_dataset

    root = fixtures.write_manifest(tmp_path / "m", n_subjects=3)
    assert (create_dataset("manifest", root=str(root), workers=1).options()
            == create_dataset("manifest", root=str(root), workers=4).options())


# --- real files that packages ship (pydicom's downsized NEMA WG04 MR and CT) -----------------------------

REAL_DICOM_MR = ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm")


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:  # pydicom ships them in its wheel; a trimmed install would not
        pytest.skip(f"pydicom's test file {name} is not installed")
    return Path(path)


@pytest.mark.parametrize("name", REAL_DICOM_MR)
def test_real_mr_reads_the_same_in_every_transfer_syntax(name):
    """One real MR slice stored explicit / implicit little endian, big endian and RLE-compressed: the
    reader gives the same values whatever the encoding."""
    import pydicom

    reference = pydicom.dcmread(_pydicom_file("MR_small.dcm")).pixel_array
    raw = readers.read_image(_pydicom_file(name))
    assert raw.format == "dicom" and raw.data.shape == (64, 64) and raw.bit_depth == 16
    np.testing.assert_array_equal(raw.data, reference.astype(np.float64))


def test_real_ct_is_read_in_hounsfield_units():
    import pydicom

    path = _pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    raw = readers.read_image(path)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    np.testing.assert_array_equal(raw.data, ds.pixel_array.astype(np.float64) - 1024.0)
    assert raw.data.min() < -800 and raw.data.max() > 1000  # air and bone, in HU


def test_real_dicom_with_a_missing_decoder_is_one_line_naming_what_to_install():
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("gdcm", "pylibjpeg", "jpeg_ls")):
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(readers.ImageError, match=r"JPEG-LS Lossless.*needs a decoder.*pylibjpeg") as info:
        readers.read_image(_pydicom_file("MR_small_jpeg_ls_lossless.dcm"))
    assert "\n" not in str(info.value)


def test_real_dicom_slices_go_through_the_adapters_preprocessing():
    """The real MR and CT slices through the pipeline every real adapter uses: (64, 64) float32 in [0, 1];
    the CT through a soft-tissue window in HU."""
    from ldbench.data.preprocess import Pipeline

    mr = Pipeline.build().run(readers.read_image(_pydicom_file("MR_small.dcm")), 64)
    ct = Pipeline.build(intensity={"name": "window", "center": 40, "width": 400}).run(
        readers.read_image(_pydicom_file("CT_small.dcm")), 64)
    for img in (mr, ct):
        assert img.shape == (64, 64) and img.dtype == np.float32 and 0.0 <= img.min() < img.max() <= 1.0
    assert (ct == 0.0).mean() > 0.05 and (ct == 1.0).mean() > 0.001  # air below the window, bone above


# --- real brain data that dipy ships (a T1 slice and small real NIfTI volumes) --------------------------


def _dipy_file(name: str) -> Path:
    pytest.importorskip("dipy")  # a test dependency: its wheel carries these files
    import importlib.resources

    return Path(str(importlib.resources.files("dipy") / "data" / "files" / name))


@pytest.mark.parametrize("name, shape", [("S0_10slices.nii.gz", (128, 128, 10, 1)), ("aniso_vox.nii.gz", (58, 58, 24))])
def test_real_nifti_volumes_read_exactly_and_slice_to_an_axial_image(name, shape):
    import nibabel as nib

    from ldbench.data.preprocess import Pipeline

    path = _dipy_file(name)
    raw = readers.read_image(path)
    assert raw.format == "nifti" and raw.data.shape == shape and raw.nifti is not None
    np.testing.assert_array_equal(raw.data, np.asarray(nib.load(str(path)).dataobj, dtype=np.float64))
    img = Pipeline.build().run(raw, 64)  # canonical orientation, the slice at 60% of the brain's extent
    assert img.shape == (64, 64) and img.dtype == np.float32 and 0.0 <= img.min() < img.max() <= 1.0


def test_a_real_t1_slice_keeps_its_values_through_nifti_and_sixteen_bit_png(tmp_path):
    """dipy's real coronal T1 slice (256 × 256, [0, 1]) written the two ways a user hands slices in, read
    back: exact through NIfTI, within half a 16-bit step through a 16-bit PNG."""
    import nibabel as nib

    t1 = np.load(_dipy_file("t1_coronal_slice.npy"), allow_pickle=False)
    assert t1.shape == (256, 256) and t1.min() == 0.0 and t1.max() == 1.0
    nib.save(nib.Nifti1Image(t1[:, :, None].astype(np.float32), np.eye(4)), str(tmp_path / "t1.nii.gz"))
    np.testing.assert_array_equal(readers.read_image(tmp_path / "t1.nii.gz").data[:, :, 0], t1.astype(np.float32))
    Image.fromarray(np.round(t1 * 65535).astype(np.uint16)).save(tmp_path / "t1.png")
    raw = readers.read_image(tmp_path / "t1.png")
    assert raw.bit_depth == 16
    np.testing.assert_allclose(images.read_image(tmp_path / "t1.png"), t1, atol=0.5 / 65535 + 1e-12)
