"""The evaluation tasks, run by an `Evaluator` that owns one model and its feature cache.

Each task returns an `EvalResult`: headline numbers (`summary`), full `metrics`, the parameters
that produced them, and in-memory `artifacts` for plotting. Writing files is `results.py`'s job.
The tasks `evaluate()` can run by name are `EvalTask`s in `clipforge.registry.EVAL_TASKS` (end of file).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..probe import COARSE_GRID, REFINE_STEPS, fit_probe, linear_probe, mean_std, sample_shots
from ..registry import EVAL_TASKS
from ..runtime import Encoder
from ..zeroshot import ZeroShotClassifier, resolve_templates
from . import metrics as M
from .classification import classification_metrics, predict_chunked
from .config import DEFAULT_SEEDS, DEFAULT_SHOTS, EvalConfig
from .datasets import DatasetSource, EvalDataset, stratified_split
from .features import FeatureExtractor
from .ranking import DEFAULT_GALLERY_CHUNK, DEFAULT_QUERY_CHUNK, chunked_topk, rank_summary, retrieval_ranks

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class EvalResult:
    """One (model, dataset, task) evaluation."""

    task: str
    dataset: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False)


def _timed(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
    def wrapper(self: "Evaluator", *args: Any, **kwargs: Any) -> EvalResult:
        start = time.perf_counter()
        result = fn(self, *args, **kwargs)
        result.wall_time_s = round(time.perf_counter() - start, 3)
        result.model = dict(self.model_info)
        return result

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


class _ReorderedHead:
    """A fixed head whose logit columns follow another order of the same class names."""

    def __init__(self, head: Any, classnames: list[str]) -> None:
        self.head, self.classnames = head, classnames
        self.order = torch.tensor([list(head.classnames).index(c) for c in classnames])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head.logits(features)[:, self.order]


def aligned_head(head: Any, classnames: Sequence[str]) -> Any:
    """`head` with its logits in the dataset's class order; the class sets must be equal."""
    if list(head.classnames) == list(classnames):
        return head
    if sorted(head.classnames) != sorted(classnames):
        extra, missing = sorted(set(head.classnames) - set(classnames)), sorted(set(classnames) - set(head.classnames))
        raise ValueError(
            f"the adapter's classes differ from the dataset's: only in the adapter {extra[:10]}, "
            f"only in the dataset {missing[:10]}"
        )
    return _ReorderedHead(head, list(classnames))


class Evaluator:
    """Runs evaluation tasks for one model; features and prompt embeddings go through the cache."""

    def __init__(
        self,
        model: Encoder,
        preprocess: Callable,
        tokenizer: Callable,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        progress: bool = True,
        query_chunk: int = DEFAULT_QUERY_CHUNK,
        gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
        model_info: dict[str, Any] | None = None,
        head: Any = None,
    ) -> None:
        """`head` (optional): a fixed classifier with `classnames` and `logits(features)`, e.g. a fitted
        adapter (`clipforge.adapt.load_adapted`); zero-shot and robustness then use it instead of
        prompt embeddings, and `model.encode_image` must produce its input."""
        self.model = model
        self.head = head
        self.features = FeatureExtractor(model, preprocess, tokenizer, cache_dir, batch_size, num_workers, progress)
        self.progress = progress
        self.query_chunk, self.gallery_chunk = query_chunk, gallery_chunk
        self.model_info = {"hash": self.features.model_hash, **(model_info or {})}

    # -- building blocks ----------------------------------------------------------------------

    def embed(self, dataset: EvalDataset) -> tuple[np.ndarray, EvalDataset, list[str]]:
        """(features, the dataset restricted to readable images, notes about skipped images)."""
        out = self.features.images(dataset)
        notes = []
        if out.skipped.count:
            notes.append(f"{dataset.title}: {out.skipped.summary()}")
            dataset = dataset.subset(out.kept)
        return out.features, dataset, notes

    def classifier(self, classnames: Sequence[str], templates: str | Sequence[str]) -> ZeroShotClassifier:
        """Prompt-ensemble classifier (CLIP's recipe) from cached prompt embeddings, or the fixed head."""
        if self.head is not None:
            return aligned_head(self.head, classnames)
        tmpl = resolve_templates(templates)
        prompts = [t.format(c) for c in classnames for t in tmpl]
        feats = F.normalize(torch.from_numpy(np.array(self.features.texts(prompts, "embedding prompts"))), dim=-1)
        weights = F.normalize(feats.view(len(classnames), len(tmpl), -1).mean(dim=1), dim=-1)
        bias = self.model.logit_bias
        return ZeroShotClassifier(
            list(classnames),
            weights,
            float(self.model.logit_scale.detach().exp()),
            None if bias is None else float(bias.detach()),
        )

    @staticmethod
    def _templates(dataset: EvalDataset | DatasetSource, templates: str | Sequence[str] | None) -> list[str]:
        return resolve_templates(templates or dataset.templates or "openai")

    @staticmethod
    def _need_labels(dataset: EvalDataset, task: str) -> np.ndarray:
        """The dataset's labels (ValueError naming `task` when it has none)."""
        if dataset.labels is None:
            raise ValueError(f"{task} needs class labels, but dataset {dataset.title!r} has none (captions only?)")
        return dataset.labels

    def _zeroshot_scores(self, features: np.ndarray, dataset: EvalDataset, clf: ZeroShotClassifier):
        top, conf = predict_chunked(features, clf, chunk=self.query_chunk)
        labels = self._need_labels(dataset, "zero-shot classification")
        return classification_metrics(labels, top, conf, clf.classnames)

    # -- tasks ----------------------------------------------------------------------------------

    @_timed
    def zeroshot(self, dataset: EvalDataset, templates: str | Sequence[str] | None = None) -> EvalResult:
        """Zero-shot classification: top-1/5, mean per-class recall, confusion, per-class report, ECE."""
        self._need_labels(dataset, "zero-shot classification")
        tmpl = self._templates(dataset, templates)
        features, dataset, notes = self.embed(dataset)
        clf = self.classifier(dataset.classnames or [], tmpl)
        metrics, more = self._zeroshot_scores(features, dataset, clf)
        summary = {k: metrics[k] for k in ("top1", "top5", "mean_per_class_recall", "ece")}
        return EvalResult(
            "zeroshot",
            dataset.describe(),
            summary,
            metrics,
            {"templates": tmpl, "n_templates": len(tmpl), "confidence": "softmax", "ece_bins": M.ECE_BINS},
            notes=notes + more,
            artifacts={
                "confusion": np.asarray(metrics["confusion_matrix"]),
                "classnames": clf.classnames,
                "calibration": metrics["calibration"],
            },
        )

    @_timed
    def retrieval(
        self, dataset: EvalDataset, ks: Sequence[int] = RETRIEVAL_KS, n_examples: int = 6, example_k: int = 5
    ) -> EvalResult:
        """Image→text and text→image recall@k, mean and median rank, in chunks (never N x M)."""
        if not dataset.has_captions:
            raise ValueError(f"retrieval needs captions, but dataset {dataset.title!r} has none")
        image_feats, dataset, notes = self.embed(dataset)
        captions, owner = dataset.captions or [], dataset.caption_image
        if owner is None:  # set with the captions (and kept by `subset`)
            raise ValueError(f"retrieval needs captions, but dataset {dataset.title!r} has none")
        text_feats = self.features.texts(captions, "embedding captions")
        device = self.model.device  # rank on the model's GPU when there is one
        i2t, t2i = retrieval_ranks(
            image_feats, text_feats, owner, True, self.query_chunk, self.gallery_chunk, device, self.progress
        )
        orphans = int((i2t == 0).sum())
        if orphans:
            notes.append(f"{orphans} image(s) have no caption and are not image→text queries")
        ks = tuple(sorted(set(ks)))
        metrics: dict[str, Any] = {
            "image_to_text": rank_summary(i2t[i2t > 0], ks),
            "text_to_image": rank_summary(t2i, ks),
            "n_images": len(dataset),
            "n_captions": len(captions),
        }
        summary = {
            f"{tag}_{m}": metrics[d][m]
            for d, tag in (("image_to_text", "i2t"), ("text_to_image", "t2i"))
            for m in (*[f"recall@{k}" for k in ks], "mean_rank", "median_rank")
        }
        picks = np.linspace(0, len(captions) - 1, num=min(n_examples, len(captions))).round().astype(int)
        scores, hits = chunked_topk(
            np.asarray(text_feats[picks]),
            image_feats,
            example_k,
            query_chunk=self.query_chunk,
            gallery_chunk=self.gallery_chunk,
            device=device,
        )
        examples = [
            {
                "caption": captions[c],
                "target": int(owner[c]),
                "target_rank": int(t2i[c]),
                "top": hits[r].tolist(),
                "scores": scores[r].tolist(),
            }
            for r, c in enumerate(picks)
        ]
        return EvalResult(
            "retrieval",
            dataset.describe(),
            summary,
            metrics,
            {
                "ks": list(ks),
                "captions_per_image": round(len(captions) / max(len(dataset), 1), 3),
                "query_chunk": self.query_chunk,
                "gallery_chunk": self.gallery_chunk,
                "rank_ties": "counted in the query's favour",
            },
            notes=notes,
            artifacts={"examples": examples, "dataset": dataset},
        )

    @staticmethod
    def probe_splits(
        source: DatasetSource, test_split: str | None = None, max_samples: int | None = None, seed: int = 0
    ) -> tuple[EvalDataset, EvalDataset, EvalDataset, list[str]]:
        """(train, val, test) for probes; carves val from train, or 60/20/20 from unsplit data (no features
        are computed: the plan calls this before any work to find empty splits)."""
        notes: list[str] = []
        splits = source.splits
        if "train" in splits:
            train = source.load("train", max_samples=max_samples, seed=seed)
            test = source.load(test_split or source.default_split(), source.default_shift(), max_samples, seed)
            if "val" in splits:
                val = source.load("val", max_samples=max_samples, seed=seed)
            else:
                tr, va = stratified_split(Evaluator._need_labels(train, "the linear probe"), (0.8, 0.2), seed)
                train, val = train.subset(tr), train.subset(va)
                notes.append("no validation split: 20% of train (stratified) used for choosing C")
        else:
            full = source.load(splits[0], max_samples=max_samples, seed=seed)
            tr, va, te = stratified_split(Evaluator._need_labels(full, "the linear probe"), (0.6, 0.2, 0.2), seed)
            train, val, test = full.subset(tr), full.subset(va), full.subset(te)
            notes.append(f"no train split: a stratified 60/20/20 train/val/test split of {splits[0]!r} was made")
        for d in (train, val, test):
            Evaluator._need_labels(d, "the linear probe")
        return train, val, test, notes

    def _probe_features(
        self, datasets: Sequence[EvalDataset]
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[EvalDataset], list[str]]:
        """In-memory (features, labels) per dataset, the datasets minus unreadable images, notes."""
        xy, kept, notes = [], [], []
        for d in datasets:
            feats, d, more = self.embed(d)
            xy.append((np.asarray(feats, np.float32), np.asarray(d.labels)))
            kept.append(d)
            notes += more
        return xy, kept, notes

    @_timed
    def linear_probe(
        self,
        source: DatasetSource,
        test_split: str | None = None,
        max_samples: int | None = None,
        seed: int = 0,
        grid: Sequence[float] = COARSE_GRID,
        steps: int = REFINE_STEPS,
    ) -> EvalResult:
        """Logistic regression on frozen un-normalised features; C chosen on val, refit on train+val."""
        train, val, test, notes = self.probe_splits(source, test_split, max_samples, seed)
        (tr, va, te), (train, val, test), more = self._probe_features((train, val, test))
        res = linear_probe(tr, va, te, grid, steps, refit_on_val=True, seed=seed)
        names = test.classnames or []
        cls, more2 = classification_metrics(te[1], res["ranked_classes"], None, names)
        if res["unconverged_fits"]:
            more2.append(f"{res['unconverged_fits']} of {res['n_fits']} fits hit max_iter=1000 before converging")
        metrics = {
            "accuracy": res["test_accuracy"],
            "top5": cls["top5"],
            "mean_per_class_recall": cls["mean_per_class_recall"],
            "val_accuracy": res["val_accuracy"],
            "C": res["C"],
            "chance": cls["chance"],
            "n_train": res["n_train"],
            "n_val": len(va[1]),
            "n_test": res["n_test"],
            "search": res["search"],
            "per_class": cls["per_class"],
            "confusion_matrix": cls["confusion_matrix"],
        }
        summary = {k: metrics[k] for k in ("accuracy", "mean_per_class_recall", "val_accuracy", "C")}
        return EvalResult(
            "linear-probe",
            {**test.describe(), "train": train.describe(), "val": val.describe()},
            summary,
            metrics,
            {
                "classifier": "sklearn LogisticRegression(lbfgs, L2, max_iter=1000)",
                "features": "un-normalised",
                "C_grid": list(grid),
                "refine_steps": steps,
                "refit": "train+val",
                "seed": seed,
                "max_samples_per_split": max_samples,
            },
            notes=notes + more + more2,
            artifacts={"confusion": np.asarray(cls["confusion_matrix"]), "classnames": names},
        )

    @_timed
    def few_shot(
        self,
        source: DatasetSource,
        shots: Sequence[int] = DEFAULT_SHOTS,
        seeds: Sequence[int] = DEFAULT_SEEDS,
        templates: str | Sequence[str] | None = None,
        test_split: str | None = None,
        max_samples: int | None = None,
        steps: int = REFINE_STEPS,
    ) -> EvalResult:
        """Linear-probe accuracy with k labelled images per class (mean ± std over seeds); zero-shot at k=0."""
        train, val, test, notes = self.probe_splits(source, test_split, max_samples, 0)
        (tr, va, te), (train, val, test), more = self._probe_features((train, val, test))
        notes += more
        tmpl = self._templates(test, templates)
        clf = self.classifier(test.classnames or [], tmpl)
        zs, _ = self._zeroshot_scores(te[0], test, clf)
        counts = np.bincount(tr[1], minlength=len(test.classnames or []))
        rows, runs = [], []
        jobs = [(k, s) for k in sorted(set(shots)) for s in seeds]
        by_k: dict[int, list[float]] = {}
        for k, s in tqdm(jobs, desc="few-shot probes", disable=not self.progress):
            ti, vi = sample_shots(tr[1], k, s), sample_shots(va[1], min(k, 4), s)
            if len(np.unique(tr[1][ti])) < 2:
                raise ValueError("few-shot needs at least two classes with training images")
            res = linear_probe(
                (tr[0][ti], tr[1][ti]), (va[0][vi], va[1][vi]), te, COARSE_GRID, steps, refit_on_val=False, seed=s
            )
            runs.append(
                {
                    "shots": k,
                    "seed": s,
                    "accuracy": res["test_accuracy"],
                    "C": res["C"],
                    "n_train": int(len(ti)),
                    "n_val": int(len(vi)),
                }
            )
            by_k.setdefault(k, []).append(res["test_accuracy"])
        for k, accs in by_k.items():
            mean, std = mean_std(accs)
            rows.append({"shots": k, "mean": mean, "std": std, "n_seeds": len(accs)})
            short = [n for n, c in zip(test.classnames or [], counts) if 0 < c < k]
            if short:
                notes.append(f"{k}-shot: {len(short)} class(es) have fewer than {k} training images; all were used")
        chance = M.chance_levels(te[1], len(test.classnames or []))
        metrics = {
            "curve": rows,
            "zeroshot": {"shots": 0, "accuracy": zs["top1"]},
            "runs": runs,
            "chance": chance,
            "n_test": int(len(te[1])),
        }
        summary = {
            "zeroshot": zs["top1"],
            **{f"{r['shots']}-shot": r["mean"] for r in rows},
            **{f"{r['shots']}-shot_std": r["std"] for r in rows},
        }
        return EvalResult(
            "few-shot",
            {**test.describe(), "train": train.describe(), "val": val.describe()},
            summary,
            metrics,
            {
                "shots": sorted(set(shots)),
                "seeds": list(seeds),
                "val_shots": "min(k, 4) per class",
                "refit": "k-shot train only (val used to choose C)",
                "C_grid": list(COARSE_GRID),
                "refine_steps": steps,
                "templates": tmpl,
                "max_samples_per_split": max_samples,
            },
            notes=notes,
            artifacts={"curve": rows, "zeroshot": zs["top1"], "chance": chance["majority"]},
        )

    @_timed
    def robustness(
        self,
        source: DatasetSource,
        templates: str | Sequence[str] | None = None,
        max_samples: int | None = None,
        probe: bool = False,
        seed: int = 0,
    ) -> EvalResult:
        """Accuracy on each distribution shift next to in-distribution accuracy (zero-shot, optional probe)."""
        variants = source.robustness_variants()
        if not variants:
            raise ValueError(f"dataset {source.name!r} has no distribution-shift variants for robustness")
        id_split = "test" if "test" in source.splits else source.default_split()
        datasets = [("in-distribution", source.load(id_split, None, max_samples, seed))]
        datasets += [(name, source.load(split, shift, max_samples, seed)) for name, split, shift in variants]
        self._need_labels(datasets[0][1], "robustness")
        tmpl = self._templates(datasets[0][1], templates)
        clf = self.classifier(datasets[0][1].classnames or [], tmpl)
        probe_clf = None
        notes: list[str] = []
        if probe:
            train, val, _test, notes = self.probe_splits(source, None, max_samples, seed)
            (tr, va), _, more = self._probe_features((train, val))
            probe_clf, _C = fit_probe(tr, va, seed=seed)
            notes += more
        rows = []
        for name, ds in datasets:
            feats, ds, more = self.embed(ds)
            notes += more
            m, _ = self._zeroshot_scores(feats, ds, clf)
            row = {
                "variant": name,
                "split": ds.split,
                "shift": ds.shift,
                "n": len(ds),
                "zeroshot_accuracy": m["top1"],
                "zeroshot_mean_per_class_recall": m["mean_per_class_recall"],
                "zeroshot_ece": m["ece"],
            }
            if probe_clf is not None:
                row["probe_accuracy"] = float((probe_clf.predict(np.asarray(feats, np.float32)) == ds.labels).mean())
            rows.append(row)
        base = rows[0]
        for row in rows:
            for head in ("zeroshot", "probe"):
                if f"{head}_accuracy" in row:
                    row[f"{head}_gap"] = row[f"{head}_accuracy"] - base[f"{head}_accuracy"]
        shifted = rows[1:]
        summary = {
            "id_zeroshot_accuracy": base["zeroshot_accuracy"],
            "mean_shift_zeroshot_accuracy": float(np.mean([r["zeroshot_accuracy"] for r in shifted])),
            **{f"{r['variant']}_zeroshot_accuracy": r["zeroshot_accuracy"] for r in shifted},
        }
        if probe_clf is not None:
            summary["id_probe_accuracy"] = base["probe_accuracy"]
            summary["mean_shift_probe_accuracy"] = float(np.mean([r["probe_accuracy"] for r in shifted]))
        return EvalResult(
            "robustness",
            datasets[0][1].describe(),
            summary,
            {"table": rows},
            {
                "variants": [v[0] for v in variants],
                "templates": tmpl,
                "probe": probe,
                "max_samples_per_variant": max_samples,
                "effective_robustness": "needs several models: `clipforge eval report` fits it across result files",
            },
            notes=notes,
            artifacts={"table": rows},
        )


# -- the task registry ------------------------------------------------------------------------------

#: what the probes (`clipforge.probe`) import: scikit-learn's logistic regression and threadpoolctl
PROBE_PACKAGES = ("sklearn", "threadpoolctl")

#: what a task can need from a dataset: (reason it is missing, whether `source` / its `test_set()` has it)
NEEDS: dict[str, tuple[str, Callable[[DatasetSource, Callable[[], EvalDataset]], bool]]] = {
    "labels": ("the dataset has no class labels", lambda source, test_set: source.classnames is not None),
    "captions": ("the dataset has no captions", lambda source, test_set: test_set().has_captions),
    "variants": (
        "the dataset has no distribution-shift variants",
        lambda source, test_set: bool(source.robustness_variants()),
    ),
    "masks": ("the dataset has no pixel masks", lambda source, test_set: hasattr(source, "mask_source")),
}


@dataclass(frozen=True)
class EvalTask:
    """A task `evaluate()` runs by name.

    `run(evaluator, source, test_set, config)` returns the result; `test_set()` loads the
    evaluation split lazily (tasks that draw their own splits ignore it). `needs` names keys of
    `NEEDS`; `with_adapter` says whether a fitted adapter's head may stand in for the prompts. `reads`
    says which splits it embeds, so an empty one is found before any work: "test" (the evaluation
    split), "probe" (`Evaluator.probe_splits`: train, val and test) or "own" (the task checks itself).
    `requires` lists optional packages (import names) it cannot run without, checked before any work.
    """

    run: Callable[[Evaluator, DatasetSource, Callable[[], EvalDataset], EvalConfig], EvalResult]
    needs: tuple[str, ...] = ()
    with_adapter: bool = False
    reads: Literal["test", "probe", "own"] = "test"
    requires: tuple[str, ...] = ()

    def empty_split(
        self, source: DatasetSource, test_set: Callable[[], EvalDataset], split: str | None, max_samples: int | None
    ) -> str | None:
        """Which split this task reads has no samples (None if none is empty); loads no features."""
        cap = f" with --max-samples {max_samples}" if max_samples else ""
        if self.reads == "test":
            test = test_set()
            return f"split {test.split!r} has no samples{cap}" if len(test) == 0 else None
        if self.reads == "probe":
            train, val, test, notes = Evaluator.probe_splits(source, split, max_samples)
            if min(len(train), len(val), len(test)) == 0:
                sizes = f"train {len(train)}, val {len(val)}, test ({test.split}) {len(test)}"
                made = f" ({notes[0]})" if notes else ""
                return f"a probe needs samples in every split{cap}, and one is empty: {sizes}{made}"
        return None

    def why_not(self, source: DatasetSource, test_set: Callable[[], EvalDataset]) -> str | None:
        """Why this task cannot run on `source` (None if it can)."""
        for need in self.needs:
            reason, present = NEEDS[need]
            if not present(source, test_set):
                return reason
        return None


def register_task(name: str, task: EvalTask, help: str) -> EvalTask:
    """Make `task` runnable as `evaluate(name, ...)` / `clipforge eval --task name`."""
    unknown = [n for n in task.needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"task {name!r} needs {unknown}; known needs: {', '.join(NEEDS)}")
    return EVAL_TASKS.register(name, task, help)


register_task(
    "zeroshot",
    EvalTask(lambda ev, src, test, c: ev.zeroshot(test(), c.templates), ("labels",), with_adapter=True),
    "zero-shot classification: top-1/5, mean per-class recall, confusion, ECE",
)
register_task(
    "retrieval",
    EvalTask(lambda ev, src, test, c: ev.retrieval(test()), ("captions",)),
    "image↔text recall@k, mean and median rank",
)
register_task(
    "linear-probe",
    EvalTask(
        lambda ev, src, test, c: ev.linear_probe(src, c.split, c.max_samples),
        ("labels",),
        reads="probe",
        requires=PROBE_PACKAGES,
    ),
    "logistic regression on frozen features, C chosen on validation",
)
register_task(
    "few-shot",
    EvalTask(
        lambda ev, src, test, c: ev.few_shot(src, c.shots, c.seeds, c.templates, c.split, c.max_samples),
        ("labels",),
        reads="probe",
        requires=PROBE_PACKAGES,
    ),
    "k-shot linear probes (and zero-shot-initialised ones) over seeds",
)
register_task(
    "robustness",
    EvalTask(
        lambda ev, src, test, c: ev.robustness(src, c.templates, c.max_samples, c.probe_robustness),
        ("labels", "variants"),
        with_adapter=True,
    ),
    "accuracy under each distribution shift next to in-distribution accuracy",
)

#: the built-in tasks, in report order (others may register more in EVAL_TASKS)
TASKS = tuple(EVAL_TASKS.list())
