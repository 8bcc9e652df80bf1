"""Few-shot adaptation results on the shapes world: every method vs zero-shot, base-to-novel, WiSE-FT under shift.

    python bench/adapt_results.py --model RUN/final --tasks shape colour \
        --shots 1 2 4 8 16 --seeds 0 1 --docs docs/adaptation.md

writes bench/results/adapt_results.json and (with --docs) replaces the results section of
docs/adaptation.md between its `<!-- adapt-results:start/end -->` markers. `--render-only`
re-renders the Markdown from an existing JSON. Backbone features (plain and augmented views) are
cached, so re-runs spend their time on the trained methods only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, load_average, machine_info, markdown_table, replace_doc_section, write_json  # noqa: E402

from clipforge import adapt  # noqa: E402
from clipforge.adapt import protocols as P  # noqa: E402
from clipforge.adapt.soup import ModelSoup  # noqa: E402
from clipforge.adapt.wise_ft import WiSEFT  # noqa: E402
from clipforge.evaluate import ShapesSource  # noqa: E402
from clipforge.probe import mean_std  # noqa: E402

SHIFTS = ("noise", "blur", "sketch", "background")
FEATURE_METHODS = ("linear-probe", "tip-adapter", "tip-adapter-f", "gda", "clip-adapter", "coop", "cocoop")
PIXEL_METHODS = ("maple", "finetune", "lora", "wise-ft", "soup-uniform", "soup-greedy")
B2N_METHODS = ("zeroshot", "coop", "cocoop", "maple")
#: Hyperparameters of the table (method defaults unless listed; every change is for CPU budget and is
#: reported in the JSON and the docs).
BENCH_HPARAMS: dict[str, dict[str, Any]] = {
    "coop": {"n_ctx": 16},  # epochs: the paper's rule (50/100/200 by shots)
    "cocoop": {"epochs": 10, "batch_size": 1},
    "maple": {"epochs": 5, "batch_size": 4},
    "finetune": {"lr": 1e-4, "epochs": 20, "batch_size": 32},
    "lora": {"iterations": 100},  # CLIP-LoRA: 500 x shots iterations
    "tpt": {"n_views": 64, "steps": 1},
}
#: Augmentations must preserve labels: flips swap left/right and crops move objects, so the position task
#: trains (views, pixel methods, TPT) with mild crops and no flips; other tasks use the papers' defaults.
TASK_AUGMENT: dict[str, dict[str, Any]] = {"position": {"crop_scale": (0.9, 1.0), "hflip": False}}
PIXEL_AUG_METHODS = ("maple", "finetune", "lora", "tpt")
SOUP_INGREDIENTS = ({"lr": 3e-5, "seed": 1}, {"lr": 3e-4, "seed": 2}, {"lr": 1e-4, "seed": 3, "crop_scale": [0.8, 1.0]})
WISE_ALPHAS = tuple(round(a * 0.1, 1) for a in range(11))
LABELS = {
    "zeroshot": "Zero-shot CLIP (template ensemble)",
    "linear-probe": "Linear probe (CLIP protocol)",
    "tip-adapter": "Tip-Adapter",
    "tip-adapter-f": "Tip-Adapter-F",
    "gda": "GDA",
    "clip-adapter": "CLIP-Adapter",
    "coop": "CoOp (M=16, end)",
    "cocoop": "CoCoOp",
    "maple": "MaPLe",
    "tpt": "TPT (test-time, no shots)",
    "finetune": "Full fine-tuning",
    "lora": "LoRA (r=2, q/k/v, both towers)",
    "wise-ft": "WiSE-FT (α=0.5)",
    "soup-uniform": "Model soup, uniform (4 fine-tunes)",
    "soup-greedy": "Model soup, greedy (held-out val)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_split(task: str, split: str, n: int, shift: str | None = None) -> adapt.FewShotData:
    ds = ShapesSource(task, size=n).load(split, shift)
    return adapt.FewShotData(ds.labels, images=ds.images, key=ds.fingerprint)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_task(task: str, backbone: adapt.Backbone, args, cache: adapt.FeatureCache, out: dict) -> None:
    res = out.setdefault(task, {})
    log(f"{task}: rendering and embedding data")
    aug = TASK_AUGMENT.get(task, {})
    view_aug = {"scale": aug.get("crop_scale", (0.5, 1.0)), "hflip": aug.get("hflip", True)}
    pool = load_split(task, "train", args.train_size)
    pool.ensure(backbone, features=True, views=args.views, cache=cache, **view_aug)

    def hparams(method: str, **more: Any) -> dict[str, Any]:
        table = {**BENCH_HPARAMS.get(method, {}), **args.hparams.get(method, {})}
        return {**table, **(aug if method in PIXEL_AUG_METHODS else {}), **more}

    val = load_split(task, "val", args.val_size).ensure(backbone, features=True, pixels=True, cache=cache)
    test = load_split(task, "test", args.test_size).ensure(backbone, features=True, pixels=True, cache=cache)
    shifted = {
        s: load_split(task, "test", args.shift_size, s).ensure(backbone, features=True, pixels=True, cache=cache)
        for s in SHIFTS
    }
    source = ShapesSource(task)
    names, templates = list(source.classnames), list(source.templates)
    splits = P.Splits(names, templates, pool, val, test, f"shapes:{task}")
    zs = adapt.create("zeroshot", backbone, names, templates)
    res["classes"], res["templates"] = names, templates
    res["zeroshot"] = {"test": P.score(zs, test), **{s: P.score(zs, d) for s, d in shifted.items()}}
    log(f"{task}: zero-shot {res['zeroshot']['test']:.3f}")
    few = res.setdefault("few_shot", {})
    wise = res.setdefault("wise_ft_sweep", {})
    for k in args.shots:
        for seed in args.seeds:
            key = f"{k}/{seed}"
            train, vsub = P.shots(pool, k, seed), P.shots(val, min(k, 4), seed)

            def record(name: str, adapter: adapt.Adapter, seconds: float) -> None:
                acc = P.score(adapter, test)
                few.setdefault(name, {})[key] = {"accuracy": acc, "fit_s": round(seconds, 2)}
                log(f"{task} k={k} seed={seed} {name:<14} {acc:.3f} ({seconds:.1f}s)")

            for m in args.methods:
                if m in FEATURE_METHODS or m in ("maple", "lora"):
                    hp = hparams(m, **({"seed": seed} if m not in ("gda", "tip-adapter") else {}))
                    try:
                        a, s = timed(lambda: adapt.create(m, backbone, names, templates, **hp).fit(train, vsub))
                    except ValueError as exc:  # e.g. MaPLe needs a ViT image tower
                        res.setdefault("not_applicable", {})[m] = str(exc)
                        continue
                    record(m, a, s)
            if not any(m in args.methods for m in ("finetune", "wise-ft", "soup-uniform", "soup-greedy")):
                continue
            ft_hp = hparams("finetune", seed=seed)
            ft, s_ft = timed(lambda: adapt.create("finetune", backbone, names, templates, **ft_hp).fit(train))
            record("finetune", ft, s_ft)
            record("wise-ft", WiSEFT.from_finetuned(ft, 0.5), s_ft)
            if "soup-uniform" in args.methods or "soup-greedy" in args.methods:
                ings, s_ing = timed(
                    lambda: [
                        adapt.create(
                            "finetune", backbone, names, templates, **{**ft_hp, **i, "seed": 10 * seed + i["seed"]}
                        ).fit(train)
                        for i in SOUP_INGREDIENTS
                    ]
                )
                for mode in ("uniform", "greedy"):
                    soup = ModelSoup(backbone, names, templates, mode=mode, **ft_hp)
                    cooked, s = timed(lambda: soup.cook([ft, *ings], vsub))
                    record(f"soup-{mode}", cooked, s_ft + s_ing + s)
                    if mode == "greedy":
                        few["soup-greedy"][key]["chosen"] = cooked.chosen
            if k == max(args.shots):
                sweep = wise_sweep(ft, test, shifted)
                wise[str(seed)] = sweep
                log(
                    f"{task} WiSE-FT seed={seed}: "
                    + ", ".join(
                        f"{a}:{i:.3f}/{s:.3f}" for a, i, s in zip(sweep["alphas"], sweep["test"], sweep["shift_avg"])
                    )
                )
            write_json(out_doc(out, args), args.out.name, args.out.parent)
    if "tpt" in args.methods:
        sub = test.subset(range(min(args.tpt_size, len(test))))
        tpt = adapt.create("tpt", backbone, names, templates, **hparams("tpt"))
        acc, s = timed(lambda: P.score(tpt, sub))
        res["tpt"] = {"accuracy": acc, "zeroshot_same_images": P.score(zs, sub), "n": len(sub), "seconds": round(s, 1)}
        log(f"{task} TPT {acc:.3f} vs zero-shot {res['tpt']['zeroshot_same_images']:.3f} on {len(sub)} images")
    b2n = res.setdefault("base_to_novel", {})
    for m in args.b2n_methods:
        if m in res.get("not_applicable", {}):
            continue
        for seed in args.seeds:
            hp = hparams(m, **({"seed": seed} if m != "zeroshot" else {}))
            r, s = timed(lambda: P.base_to_novel_run(m, backbone, splits, args.b2n_shots, seed, hp, cache, args.views))
            b2n.setdefault(m, {})[str(seed)] = {**r, "fit_s": round(s, 2)}
            log(f"{task} base-to-novel {m:<8} seed={seed} base {r['base']:.3f} novel {r['novel']:.3f} hm {r['hm']:.3f}")
        write_json(out_doc(out, args), args.out.name, args.out.parent)


def run_tasks(job: tuple[argparse.Namespace, list[str]]) -> dict[str, Any]:
    """Run some tasks in this process (partial JSON per process, so a long run can be followed)."""
    args, tasks = job
    torch.set_num_threads(args.threads)
    backbone = adapt.Backbone.load(None if args.model == "default" else args.model)
    cache = adapt.FeatureCache(args.cache_dir)
    results: dict[str, Any] = {}
    part = argparse.Namespace(**{**vars(args), "out": args.out.with_suffix(f".{'-'.join(tasks)}.partial.json")})
    for task in tasks:
        run_task(task, backbone, part, cache, results)
    return results


@torch.no_grad()
def wise_sweep(ft, test, shifted) -> dict[str, list]:
    wise = WiSEFT.from_finetuned(ft, 0.0)
    res: dict[str, list] = {"alphas": list(WISE_ALPHAS), "test": [], "shift_avg": []}
    for a in WISE_ALPHAS:
        wise.set_alpha(a)
        res["test"].append(P.score(wise, test))
        per = {s: P.score(wise, d) for s, d in shifted.items()}
        for s, v in per.items():
            res.setdefault(s, []).append(v)
        res["shift_avg"].append(float(np.mean(list(per.values()))))
    return res


def out_doc(results: dict, args) -> dict:
    return {
        "command": "python bench/adapt_results.py " + " ".join(sys.argv[1:]),
        "model": "embedded default model (src/clipforge/assets/default-model)"
        if args.model == "default"
        else str(args.model),
        "settings": {
            "shots": args.shots,
            "seeds": args.seeds,
            "train_pool": args.train_size,
            "val_pool": args.val_size,
            "val_shots": "min(k, 4) per class",
            "test": args.test_size,
            "shift_test": args.shift_size,
            "views": args.views,
            "tpt_images": args.tpt_size,
            "b2n_shots": args.b2n_shots,
            "hparams": BENCH_HPARAMS,
            "hparam_overrides": args.hparams,
            "task_augmentation": TASK_AUGMENT,
            "soup_ingredients": [{"lr": BENCH_HPARAMS["finetune"]["lr"]}, *SOUP_INGREDIENTS],
        },
        "machine": {**machine_info(), "load_average": load_average()},
        "tasks": results,
    }


def pct(values: list[float]) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}" if len(values) > 1 else f"{100 * m:.1f}"


def render(doc: dict) -> str:
    st = doc["settings"]
    lines = [
        f"Backbone `{doc['model']}`; seeds {st['seeds']}; train pool {st['train_pool']}, validation "
        f"{st['val_shots']} from a pool of {st['val_pool']}, test {st['test']} images per task "
        f"(shifted tests {st['shift_test']} each); {st['views']} augmented views per training image. "
        "Top-1 accuracy in %, mean ± sample std over seeds.",
        "",
        f"Regenerate: `{doc['command']}`",
        "",
    ]
    if doc.get("provenance"):
        lines += [doc["provenance"], ""]
    if st.get("hparam_overrides"):
        lines += [f"Hyperparameters changed from the table's: `{json.dumps(st['hparam_overrides'])}`", ""]
    for task, res in doc["tasks"].items():
        if "zeroshot" not in res:
            continue
        lines += [f"#### shapes:{task} ({len(res['classes'])} classes)", ""]
        shots = st["shots"]
        rows = [[LABELS["zeroshot"], *[f"{100 * res['zeroshot']['test']:.1f}"] * len(shots), "0"]]
        for m, runs in res.get("few_shot", {}).items():
            cells = [pct([r["accuracy"] for key, r in runs.items() if key.split("/")[0] == str(k)]) for k in shots]
            fit = [r["fit_s"] for key, r in runs.items() if key.split("/")[0] == str(max(shots))]
            rows.append([LABELS.get(m, m), *cells, f"{np.mean(fit):.0f}" if fit else "–"])
        for m, why in res.get("not_applicable", {}).items():
            rows.append([LABELS.get(m, m), *["n/a"] * len(shots), why])
        if "tpt" in res:
            t = res["tpt"]
            label = f"{LABELS['tpt']} ({t['n']} test images; zero-shot on them {100 * t['zeroshot_same_images']:.1f})"
            rows.append([label, *[f"{100 * t['accuracy']:.1f}"] * len(shots), f"{t['seconds'] / t['n']:.2f} per image"])
        header = ["method", *[f"{k}-shot" for k in shots], f"fit s ({max(shots)}-shot)"]
        lines += [markdown_table(header, rows), ""]
        if res.get("base_to_novel"):
            rows = []
            for m, runs in res["base_to_novel"].items():
                vals = list(runs.values())
                rows.append([LABELS.get(m, m), *(pct([v[x] for v in vals]) for x in ("base", "novel", "hm"))])
            lines += [f"Base-to-novel ({st['b2n_shots']} shots of the first half of the classes):", ""]
            lines += [markdown_table(["method", "base", "novel", "HM"], rows), ""]
        if res.get("wise_ft_sweep"):
            sweeps = list(res["wise_ft_sweep"].values())
            alphas = sweeps[0]["alphas"]
            header = ["α", "test (ID)", *SHIFTS, "shift avg"]
            rows = []
            for i, a in enumerate(alphas):
                rows.append([a, *(pct([sw[c][i] for sw in sweeps]) for c in ("test", *SHIFTS, "shift_avg"))])
            lines += [f"WiSE-FT sweep ({max(shots)}-shot fine-tunes; α=0 zero-shot, α=1 fine-tuned):", ""]
            lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="checkpoint path, or 'default' (the embedded model)")
    ap.add_argument("--tasks", nargs="+", default=["shape", "position"])
    ap.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=[*FEATURE_METHODS, *PIXEL_METHODS, "tpt"])
    ap.add_argument("--b2n-methods", nargs="*", default=list(B2N_METHODS))
    ap.add_argument("--b2n-shots", type=int, default=16)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--shift-size", type=int, default=500)
    ap.add_argument("--tpt-size", type=int, default=300)
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for these small models on a shared machine)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="run the tasks in this many parallel processes")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "clipforge" / "adapt"))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "adapt_results.json")
    ap.add_argument("--docs", type=Path, default=None, help="docs/adaptation.md to update in place")
    ap.add_argument("--docs-marker", default="adapt-results", help="the <!-- NAME:start/end --> section to replace")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="METHOD.KEY=JSON",
        help="override a hyperparameter of the table, e.g. --set lora.iterations=1000",
    )
    ap.add_argument("--render-only", action="store_true", help="only re-render --out into Markdown")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, help="merge per-task result JSONs into --out")
    args = ap.parse_args()
    args.hparams = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (sep and dot and method and name):
            raise SystemExit(f"--set {item!r}: expected METHOD.KEY=JSON")
        args.hparams.setdefault(method, {})[name] = json.loads(value)
    if args.merge:
        docs = [json.loads(p.read_text()) for p in args.merge]  # later files win for a task in several
        merged = {**docs[-1], "tasks": {}}
        merged["provenance"] = "merged: " + " && ".join(d["command"] for d in docs)
        merged["command"] = " && ".join(
            [*(d["command"] for d in docs), "python bench/adapt_results.py " + " ".join(sys.argv[1:])]
        )
        for d in docs:
            merged["tasks"].update(d["tasks"])
        write_json(merged, args.out.name, args.out.parent)
        table = render(merged)
    elif args.render_only:
        table = render(json.loads(args.out.read_text()))
    else:
        results: dict[str, Any] = {}
        if args.jobs > 1 and len(args.tasks) > 1:  # one single-threaded process per task
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(args.jobs, len(args.tasks))) as pool:
                for part in pool.map(run_tasks, [(args, [t]) for t in args.tasks]):
                    results.update(part)
        else:
            results = run_tasks((args, args.tasks))
        doc = out_doc(results, args)
        write_json(doc, args.out.name, args.out.parent)
        for partial in args.out.parent.glob(f"{args.out.stem}.*.partial.json"):
            partial.unlink()
        table = render(doc)
    print(table)
    if args.docs:
        replace_doc_section(args.docs, args.docs_marker, table)


if __name__ == "__main__":
    main()
