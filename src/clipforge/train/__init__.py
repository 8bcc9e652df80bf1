"""Contrastive training and fine-tuning: `train(TrainConfig(...))` or `clipforge train`."""

from .config import TrainConfig
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "train"]
