"""Real-data adapters: each reads a user's copy of a public dataset into a PreparedDataset.

oasis3, adni (NIfTI volumes + clinical CSV), chexpert, mimic-cxr-jpg (JPG + label CSVs), manifest (any
images listed in a manifest.csv). `ldbench datasets check NAME --root DIR` validates a copy.
"""

from ldbench.data.adapters import adni, chexpert, manifest, mimic_cxr, oasis3  # noqa: F401  (register)
