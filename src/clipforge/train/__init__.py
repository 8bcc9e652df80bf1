"""Contrastive training, fine-tuning and distillation: `train(TrainConfig(...))` or `clipforge train`."""

from .config import TrainConfig
from .trainer import Trainer, TrainingDiverged, train
from .validate import DatasetValidation, ShapesValidation, ValidationHook

__all__ = [
    "DatasetValidation",
    "ShapesValidation",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "ValidationHook",
    "train",
]
