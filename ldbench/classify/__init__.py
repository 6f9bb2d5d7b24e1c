"""timm classifiers on grayscale images: attribute oracles (do counterfactuals show the target
attribute?) and the AUC utility protocol (is synthetic training data as useful as real?).

Images are float32 (N, H, W) arrays in [0, 1] of any size; models read one channel normalised with
mean 0.5 and std 0.5. Architectures are timm's: any `timm.list_models()` name.
"""

import importlib

# name -> the submodule that defines it. The submodules load on first use: a run whose classifier stages
# all come from the cache needs only ClassifierOptions (classify.models), not the training code and the
# scikit-learn it imports (classify.train, classify.utility).
_EXPORTS = {
    "ClassifierOptions": "models",
    "check_model_name": "models",
    "create_model": "models",
    "load_pretrained_weights": "models",
    "TrainedClassifier": "train",
    "train_classifier": "train",
    "ARMS": "utility",
    "UtilityOptions": "utility",
    "real_arm": "utility",
    "utility_protocol": "utility",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ldbench.classify.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ldbench.classify' has no attribute {name!r}")
