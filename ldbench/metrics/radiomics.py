"""The `radiomics` feature extractor: pyradiomics features with frd-score's v1 2D settings, no network
weights. Its Fréchet distance is FRD (features z-scored against the reference, then a log; metrics.scores)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ldbench.errors import UserError
from ldbench.metrics.extractor_base import (
    EXTRACTORS,
    check_batch_size,
    check_image_shape,
    describe_fields,
    unit_range,
)

RADIOMICS_INSTALL = "pip install 'ldbench[radiomics]'"


def _frd_config_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("frd_score")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the radiomics extractor needs frd-score and pyradiomics: {RADIOMICS_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "configs" / "extraction_2d.yaml"


@EXTRACTORS.register("radiomics")
class RadiomicsExtractor:
    """Radiomic features (pyradiomics with frd-score's v1 2D settings), no network weights: FRD."""

    name = "radiomics"
    family = "radiomics"
    resize_policy = "none-pyradiomics-bspline-2px-spacing"
    channel_policy = "gray"
    compute_dtype = "float64"
    standardisation = "z-score against the reference set (frd-score v1, norm_ref=d1), applied by the frd metric"

    def __init__(self) -> None:
        try:
            import radiomics
            from radiomics import featureextractor
        except ImportError:
            raise UserError(f"the radiomics extractor needs pyradiomics and frd-score: {RADIOMICS_INSTALL}") from None
        import logging

        config = _frd_config_path()
        if not config.is_file():
            raise UserError(f"frd-score's radiomics settings {config} are missing: {RADIOMICS_INSTALL}")
        radiomics.setVerbosity(logging.ERROR)
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        self._extractor = featureextractor.RadiomicsFeatureExtractor(str(config))
        h = hashlib.sha256(config.read_bytes())
        h.update(f"pyradiomics {radiomics.__version__}; numeric diagnostics kept (frd-score v1)".encode())
        self.fingerprint = h.hexdigest()  # no weights: the settings file and library version
        self.config_path = config
        yy, xx = np.mgrid[:64, :64] / 64.0
        probe = self._raw(0.5 + 0.25 * np.sin(6 * xx) * np.cos(4 * yy))
        self.feature_names = sorted(probe)
        self.dim = len(self.feature_names)

    def _raw(self, image: np.ndarray) -> dict[str, float]:
        import SimpleITK as sitk

        # as frd-score v1 reads an 8-bit PNG: float32 pixel values, a (1, H, W) volume with spacing 1 and a
        # full mask but for the corner voxel (a pyradiomics workaround, frd-score's too)
        arr = (np.asarray(image, dtype=np.float64) * 255.0).astype(np.float32)[None]
        mask = np.ones(arr.shape, dtype=np.uint8)
        mask[0, 0, 0] = 0
        im, ma = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(mask)
        im.SetSpacing((1.0, 1.0, 1.0))
        ma.SetSpacing((1.0, 1.0, 1.0))
        out = self._extractor.execute(im, ma)
        # frd-score v1 keeps pyradiomics' numeric diagnostics (image mean / min / max, mask voxel counts, ...)
        # in the feature vector, as the paper's pipeline did; constant ones drop out as zero-std columns.
        features = {}
        for k, v in out.items():
            try:
                features[k] = float(v)
            except (TypeError, ValueError):
                if not k.startswith("diagnostics"):
                    raise
        return features

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = unit_range(check_image_shape(images))
        out = np.empty((len(x), self.dim), dtype=np.float64)
        for i, img in enumerate(x):
            raw = self._raw(img)
            if sorted(raw) != self.feature_names:
                raise UserError(f"radiomics gave {len(raw)} features for a {img.shape} image, expected {self.dim}")
            out[i] = [raw[k] for k in self.feature_names]
        if not np.all(np.isfinite(out)):
            raise UserError("radiomics gave NaN or infinite features (constant images?)")
        return out

    def describe(self) -> dict[str, Any]:
        return {**describe_fields(self, self.compute_dtype), "standardisation": self.standardisation}
