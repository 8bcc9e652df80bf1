"""Corpus indexing and search: inputs, shards, resume after a crash, incremental adds, ANN kinds, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import clipforge
from clipforge.cli.main import main
from clipforge.data.shapes import ShapesWorld, write_csv_dataset, write_webdataset

faiss = pytest.importorskip("faiss")
pytest.importorskip("pyarrow")

from clipforge.data.inputs import resolve_items  # noqa: E402
from clipforge.data.shards import expand_braces  # noqa: E402
from clipforge.index import BuildOptions, SearchIndex, add_to_index, ann, build, build_index  # noqa: E402

WORLD = ShapesWorld(seed=3, image_size=32, size=48)
QUIET = dict(progress=False)


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """Tiny indexes gain nothing from OpenMP, and on a busy 2-core machine its threads contend badly."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    csv = write_csv_dataset(WORLD, root / "csv", n=40)
    shards = write_webdataset(WORLD.with_(seed=4), root / "wds", n=30, shard_size=10)
    return {"csv": csv, "images": root / "csv" / "images", "wds": shards[0].parent}


@pytest.fixture(scope="module")
def built(tmp_path_factory, model_dir, corpus) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    opts = BuildOptions(shard_size=16, captions=True, **QUIET)
    report = build_index([str(corpus["csv"])], out, model=model_dir, options=opts)
    assert report.total == 40 and report.shards_embedded == 3
    return out


def test_brace_expansion():
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("plain{x}") == ["plain{x}"]


def test_sources_cover_folders_globs_csv_and_tar_shards(corpus):
    from_csv = resolve_items([str(corpus["csv"])])
    assert len(from_csv) == 40 and from_csv[0].caption and not from_csv[0].in_tar
    assert len(resolve_items([str(corpus["images"])])) == 40
    assert len(resolve_items([str(corpus["images"] / "00001*.png")])) == 10
    tars = resolve_items([str(corpus["wds"] / "shard-{000000..000002}.tar")])
    assert len(tars) == 30 and all(t.in_tar and t.caption for t in tars)
    assert tars[0].key == "000000" and tars[-1].key == "000029"
    with pytest.raises(FileNotFoundError):
        resolve_items([str(corpus["wds"] / "shard-{000005..000006}.tar")])


def test_layout_manifest_and_search(built, corpus):
    manifest = json.loads((built / "index.json").read_text())
    assert manifest["count"] == 40 and manifest["dim"] == 32 and manifest["index"]["kind"] == "flat"
    assert sorted(p.name for p in (built / "shards").glob("*.done.json")) == [
        f"shard-{i:06d}.done.json" for i in range(3)
    ]
    assert np.load(built / "shards" / "shard-000000.npy").shape == (16, 32)
    index = SearchIndex.open(built)
    assert len(index) == 40 and index.targets == ("image", "caption")

    hits = index.search_text("a red circle", k=5)
    assert len(hits) == 5 and all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    image = corpus["images"] / "000007.png"
    top = index.search_image(image, k=3)[0]
    assert top.id == 7 and top.score == pytest.approx(1.0, abs=1e-5)
    assert index.search_image(image.read_bytes(), k=1)[0].id == 7

    batch = index.search_vector(np.stack([index.vector(3), index.vector(9)]), k=2)
    assert [b[0].id for b in batch] == [3, 9]
    caption = index.item(11)["caption"]
    assert index.search_text(caption, k=1, target="caption")[0].id == 11  # the caption embedding itself
    assert index.image_bytes(7) == image.read_bytes()
    assert len(index.search_text("x", k=1000)) == 40  # k is clamped to the corpus
    with pytest.raises(KeyError):
        index.item(40)
    with pytest.raises(ValueError, match="dimensions"):
        index.search_vector(np.ones(5), k=1)


def test_rerun_is_a_no_op_and_other_inputs_are_refused(built, model_dir, corpus):
    again = build_index([str(corpus["csv"])], built, model=model_dir, options=BuildOptions(captions=True, **QUIET))
    assert again.up_to_date and again.shards_embedded == 0 and again.total == 40
    with pytest.raises(ValueError, match="other inputs"):
        build_index([str(corpus["images"])], built, model=model_dir, options=BuildOptions(**QUIET))


def test_unreadable_images_are_skipped(tmp_path, model_dir, corpus):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("000001.png", "000002.png", "000003.png"):
        (folder / name).write_bytes((corpus["images"] / name).read_bytes())
    (folder / "000002b.png").write_bytes(b"\x89PNG not really")
    report = build_index([str(folder)], tmp_path / "idx", model=model_dir, options=BuildOptions(**QUIET))
    assert report.total == 3 and report.skipped == 1
    index = SearchIndex.open(tmp_path / "idx")
    assert [index.item(i)["key"].endswith(n) for i, n in ((0, "000001.png"), (3, "000003.png"))] == [True, True]
    with pytest.raises(KeyError):
        index.item(2)  # the broken file's id stays unused


def test_incremental_add_of_webdataset_shards(tmp_path, model_dir, corpus):
    out = tmp_path / "idx"
    build_index([str(corpus["csv"])], out, model=model_dir, options=BuildOptions(shard_size=16, **QUIET))
    before = SearchIndex.open(out).search_text("a green star", k=40)
    pattern = str(corpus["wds"] / "shard-{000000..000002}.tar")
    report = add_to_index(out, [pattern], options=BuildOptions(**QUIET))
    assert report.added == 30 and report.total == 70
    index = SearchIndex.open(out)
    assert len(index) == 70 and index.item(40)["member"] == "000000.png"
    query = index.search_vector(index.vector(55), k=1)[0]
    assert query.id == 55 and query.path.endswith("shard-000001.tar")
    assert index.image_bytes(55)[:8] == b"\x89PNG\r\n\x1a\n"
    after = [h for h in index.search_text("a green star", k=70) if h.id < 40]
    assert [h.id for h in after] == [h.id for h in before]  # old items keep their ids and scores
    again = add_to_index(out, [pattern], options=BuildOptions(**QUIET))
    assert again.up_to_date and again.added == 0 and again.total == 70  # nothing new


def test_re_adding_a_grown_folder_adds_only_new_files(tmp_path, model_dir, corpus):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i:06d}.png").write_bytes((corpus["images"] / f"{i:06d}.png").read_bytes())
    build_index([str(folder)], tmp_path / "idx", model=model_dir, options=BuildOptions(**QUIET))
    (folder / "000010.png").write_bytes((corpus["images"] / "000010.png").read_bytes())
    report = add_to_index(tmp_path / "idx", [str(folder)], options=BuildOptions(**QUIET))
    assert report.added == 1 and report.total == 4
    assert SearchIndex.open(tmp_path / "idx").item(3)["key"].endswith("000010.png")


def test_interrupted_build_redoes_only_unfinished_shards(tmp_path, model_dir, corpus, monkeypatch):
    opts = BuildOptions(shard_size=8, **QUIET)
    reference = build_index([str(corpus["csv"])], tmp_path / "ref", model=model_dir, options=opts)
    assert reference.shards_embedded == 5

    calls: list[int] = []
    real = build.embed_shard

    def crashing(store, shard, *args, **kwargs):
        calls.append(shard)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(store, shard, *args, **kwargs)

    out = tmp_path / "idx"
    monkeypatch.setattr(build, "embed_shard", crashing)
    with pytest.raises(KeyboardInterrupt):
        build_index([str(corpus["csv"])], out, model=model_dir, options=opts)
    assert not (out / "index.faiss").exists()
    with pytest.raises(ValueError, match="not finished"):
        SearchIndex.open(out)
    # a torn shard: its files were written but the crash came before its done-marker
    (out / "shards" / "shard-000001.done.json").unlink()
    (out / "shards" / ".shard-000002.npy.tmp").write_bytes(b"partial")

    calls.clear()
    monkeypatch.setattr(build, "embed_shard", lambda *a, **k: (calls.append(a[1]), real(*a, **k)))
    resumed = build_index([str(corpus["csv"])], out, model=model_dir, options=opts)
    assert sorted(calls) == [1, 2, 3, 4] and resumed.shards_reused == 1 and resumed.total == 40
    a, b = SearchIndex.open(tmp_path / "ref"), SearchIndex.open(out)
    np.testing.assert_allclose(b.vectors(np.arange(40)), a.vectors(np.arange(40)), atol=1e-6)
    assert [h.id for h in a.search_text("a red circle", k=10)] == [h.id for h in b.search_text("a red circle", k=10)]


def test_index_choice_thresholds():
    assert ann.choose_index(10_000, 512).kind == "flat"
    assert ann.choose_index(ann.FLAT_MAX, 512).kind == "hnsw"
    assert ann.choose_index(ann.HNSW_MAX, 512).kind == "ivf_flat"
    spec = ann.choose_index(ann.IVF_FLAT_MAX, 512)
    assert spec.kind == "ivf_pq" and spec.pq_m == 64 and spec.pq_bits == 8 and spec.nlist == 8192
    assert ann.IndexSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError):
        ann.choose_index(10, 8, "annoy")


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
def test_approximate_kinds_find_true_neighbours(kind):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32))
    data = (centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32))).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    spec = ann.choose_index(len(data), 32, kind)
    train = data[ann.sample_rows(len(data), ann.train_size(spec))] if ann.train_size(spec) else None
    index = ann.build_faiss(spec, 32, [data[:2500], data[2500:]], train)
    truth = np.argsort(-(data[:50] @ data.T), axis=1)[:, :10]
    found = index.search(data[:50], 10 * (spec.rerank or 1))[1]
    if spec.rerank:  # what SearchIndex does with PQ candidates
        found = np.array([row[np.argsort(-(data[row] @ q))][:10] for row, q in zip(found, data[:50])])
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall > 0.8, recall


@pytest.mark.parametrize("kind", ["hnsw", "ivf_pq"])
def test_forced_index_type_end_to_end(tmp_path, model_dir, corpus, kind):
    out = tmp_path / kind
    build_index([str(corpus["csv"])], out, model=model_dir, options=BuildOptions(index_type=kind, **QUIET))
    assert json.loads((out / "index.json").read_text())["index"]["kind"] == kind
    index = SearchIndex.open(out)
    assert index.search_vector(index.vector(12), k=3)[0].id == 12


def test_cli_build_add_info_search(tmp_path, model_dir, corpus, capsys):
    out = tmp_path / "cli-idx"
    assert (
        main(
            [
                "index",
                "build",
                str(corpus["images"]),
                "--out",
                str(out),
                "--model",
                str(model_dir),
                "--shard-size",
                "25",
                "--quiet",
            ]
        )
        == 0
    )
    assert "40 items" in capsys.readouterr().out
    assert main(["index", "add", str(out), str(corpus["wds"] / "shard-00000[01].tar"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 60
    assert main(["index", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 60

    assert main(["search", str(out), "a red circle", "-k", "4", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0]["score"] >= rows[-1]["score"]
    # the default (fp32 engine) and the plain model embed the query alike
    assert main(["search", str(out), "a red circle", "-k", "4", "--json", "--backend", "none"]) == 0
    plain = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in plain] == [r["id"] for r in rows]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(plain, rows)) <= 1e-4
    assert main(["search", str(out), "--image", str(corpus["images"] / "000005.png"), "-k", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "id=5 " in first and "000005.png" in first
    assert main(["search", str(out)]) == 2
    assert "give a text query" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "missing"), "x"]) == 2


def test_interrupted_add_keeps_serving_the_last_index(tmp_path, model_dir, corpus, monkeypatch):
    out = tmp_path / "idx"
    build_index([str(corpus["images"])], out, model=model_dir, options=BuildOptions(shard_size=20, **QUIET))
    pattern = str(corpus["wds"] / "shard-*.tar")
    real = build.embed_shard

    def crash_on_second(store, shard, *args, **kwargs):
        if shard == 3:
            raise RuntimeError("simulated crash")
        return real(store, shard, *args, **kwargs)

    monkeypatch.setattr(build, "embed_shard", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated"):
        add_to_index(out, [pattern], options=BuildOptions(**QUIET))
    assert len(SearchIndex.open(out)) == 40  # the last completed state is still served
    with pytest.raises(ValueError, match="unfinished"):
        add_to_index(out, [str(corpus["csv"])], options=BuildOptions(**QUIET))
    monkeypatch.setattr(build, "embed_shard", real)
    resumed = add_to_index(out, [pattern], options=BuildOptions(**QUIET))
    assert resumed.shards_embedded == 1 and resumed.shards_reused == 1 and len(SearchIndex.open(out)) == 70


def test_a_model_with_other_weights_is_refused_by_search_and_add(tmp_path, model_dir, corpus):
    out = tmp_path / "idx"
    build_index([str(corpus["csv"])], out, model=model_dir, options=BuildOptions(**QUIET))
    manifest = json.loads((out / "index.json").read_text())
    model = clipforge.load(model_dir, device="cpu")[0]
    assert manifest["model"]["weights"] == model.fingerprint()
    other = tmp_path / "other"
    clipforge.save(clipforge.create_model("tiny"), other)  # same width, other weights
    with pytest.raises(ValueError, match="weights differ from those the index was built with"):
        SearchIndex.open(out, model=str(other)).search_text("a red circle", k=1)
    manifest["model"]["weights"] = "0" * 16  # as if built by other weights than the recorded checkpoint's
    (out / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="weights differ"):
        add_to_index(out, [str(corpus["wds"] / "shard-{000000..000002}.tar")], options=BuildOptions(**QUIET))
