"""Every feature extractor, registered: images (N, H, W) in [0, 1] -> float64 features (N, dim).

One module per family, as torch-fidelity lays out its feature extractors; this module imports them all
(so that EXTRACTORS is complete) and is the extractor API's import path:

- metrics.extractor_base: the FeatureExtractor protocol, the EXTRACTORS registry, create_extractor and
  the shared checks (batch size, image shape and range);
- metrics.inception (+ inception_map): `inception`, `inception-clean`, the TF 2015-12-05 Inception-v3
  pool3 features (2048-d) through torch-fidelity's network with the weights' SHA-256 pinned; the only
  family whose distances are called FID / KID;
- metrics.domain: `domain`, the offline DomainNet trained on the benchmark's own images; FD / KD;
- metrics.radiomics: `radiomics`, pyradiomics with frd-score's settings; FRD;
- metrics.dinov2, metrics.clip (on metrics.hf_vision): transformers models from local weights; FD / KD.

Every extractor says what it is (`describe()`): name, family, SHA-256 of its weights, resize and
channel policies, dimension, compute dtype. Those fields go into every record and cache key, and
reference statistics are only used with an extractor whose fields match (see metrics.stats).
"""

from __future__ import annotations

from ldbench.metrics.clip import ClipExtractor
from ldbench.metrics.dinov2 import Dinov2Extractor
from ldbench.metrics.domain import DomainExtractor
from ldbench.metrics.extractor_base import (
    EXTRACTORS,
    FeatureExtractor,
    check_batch_size,
    create_extractor,
    describe_fields,
)
from ldbench.metrics.hf_vision import weights_dir_fingerprint
from ldbench.metrics.inception import (
    CLEAN_SIZE,
    FID_HELPER_SHA256,
    FID_HELPER_SOURCE,
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_SHA256,
    INCEPTION_URL,
    CleanInceptionExtractor,
    InceptionExtractor,
    clean_resize_299,
    resolve_inception_path,
    write_random_inception_weights,
)
from ldbench.metrics.radiomics import RADIOMICS_INSTALL, RadiomicsExtractor

__all__ = [
    "CLEAN_SIZE",
    "EXTRACTORS",
    "FID_HELPER_SHA256",
    "FID_HELPER_SOURCE",
    "INCEPTION_ENV",
    "INCEPTION_FILENAME",
    "INCEPTION_SHA256",
    "INCEPTION_URL",
    "RADIOMICS_INSTALL",
    "ClipExtractor",
    "CleanInceptionExtractor",
    "Dinov2Extractor",
    "DomainExtractor",
    "FeatureExtractor",
    "InceptionExtractor",
    "RadiomicsExtractor",
    "check_batch_size",
    "clean_resize_299",
    "create_extractor",
    "describe_fields",
    "resolve_inception_path",
    "weights_dir_fingerprint",
    "write_random_inception_weights",
]
