"""timm classifiers on grayscale images: attribute oracles (do counterfactuals show the target
attribute?) and the AUC utility protocol (is synthetic training data as useful as real?).

Images are float32 (N, H, W) arrays in [0, 1] of any size; models read one channel normalised with
mean 0.5 and std 0.5. Architectures are timm's: any `timm.list_models()` name.
"""

from ldbench.classify.models import ClassifierOptions, check_model_name, create_model, load_pretrained_weights
from ldbench.classify.train import TrainedClassifier, train_classifier
from ldbench.classify.utility import ARMS, UtilityOptions, real_arm, utility_protocol

__all__ = [
    "ARMS",
    "ClassifierOptions",
    "TrainedClassifier",
    "UtilityOptions",
    "check_model_name",
    "create_model",
    "load_pretrained_weights",
    "real_arm",
    "train_classifier",
    "utility_protocol",
]
