"""Zero- and few-shot anomaly detection and segmentation: WinCLIP, WinCLIP+, AnomalyCLIP-style
learnt prompts and a PatchCore baseline, with bounded-memory image and pixel metrics.
See docs/anomaly.md."""

from .anomalyclip import AnomalyCLIP
from .base import ANOMALY_METHODS, AnomalyMethod, AnomalyScores, upsample_map
from .metrics import PixelScores, image_metrics
from .patchcore import PatchCore
from .winclip import WinCLIP

__all__ = [
    "ANOMALY_METHODS",
    "AnomalyCLIP",
    "AnomalyMethod",
    "AnomalyScores",
    "PatchCore",
    "PixelScores",
    "WinCLIP",
    "image_metrics",
    "upsample_map",
]
