"""Evaluation of CLIP models: zero-shot classification, retrieval, linear probes, few-shot curves, robustness.

Quick start::

    from clipforge.evaluate import evaluate, write_report
    evaluate(["zeroshot", "linear-probe"], "shapes:colour", model="my-model/", out_dir="results")
    write_report(["results"], "results/report")      # results/report.csv + results/report.md

Lower-level pieces (an `Evaluator` over one model, datasets, metrics, chunked ranking) are exported
too; see docs/evaluation.md.
"""

from ..probe import COARSE_GRID, fit_probe, linear_probe, sample_shots, search_C
from . import builtin  # noqa: F401  (registers the shapes and digits datasets)
from .builtin import DigitsSource, ShapesSource
from .classification import classification_metrics, predict_chunked
from .config import EvalConfig
from .datasets import DatasetSource, EvalDataset, FileImages, ImageSource, stratified_split
from .features import FeatureExtractor, ImageFeatures
from .metrics import (
    accuracy,
    chance_levels,
    confusion_matrix,
    effective_robustness,
    expected_calibration_error,
    mean_per_class_recall,
    per_class_report,
    topk_correct,
)
from .ranking import chunked_topk, rank_summary, retrieval_ranks
from .results import load_results, save_result, summary_rows, to_json, write_report
from .runner import RunOutput, default_cache_dir, evaluate, format_summary
from .sources import FolderSource, ManifestSource, load_registry_file, register_dataset, resolve_dataset
from .tasks import TASKS, EvalResult, Evaluator

__all__ = [
    "COARSE_GRID",
    "TASKS",
    "DatasetSource",
    "DigitsSource",
    "EvalConfig",
    "EvalDataset",
    "EvalResult",
    "Evaluator",
    "FeatureExtractor",
    "FileImages",
    "FolderSource",
    "ImageFeatures",
    "ImageSource",
    "ManifestSource",
    "RunOutput",
    "ShapesSource",
    "accuracy",
    "chance_levels",
    "chunked_topk",
    "classification_metrics",
    "confusion_matrix",
    "default_cache_dir",
    "effective_robustness",
    "evaluate",
    "expected_calibration_error",
    "fit_probe",
    "format_summary",
    "linear_probe",
    "load_registry_file",
    "load_results",
    "mean_per_class_recall",
    "per_class_report",
    "predict_chunked",
    "rank_summary",
    "register_dataset",
    "resolve_dataset",
    "retrieval_ranks",
    "sample_shots",
    "save_result",
    "search_C",
    "stratified_split",
    "summary_rows",
    "to_json",
    "topk_correct",
    "write_report",
]
