"""MetaCLIP curation: the automaton against a brute-force matcher, balancing against its definition,
the curated manifest against its input, the command end to end, and bad inputs as one-line errors."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from clipforge.cli.main import main
from clipforge.curate import EntryMatcher, curate_metaclip, keep_probabilities, normalise
from clipforge.curate.balance import keep_pairs
from clipforge.curate.matching import entry_key
from clipforge.data.columns import read_rows, resolve_path

ENTRIES = [
    "a",
    "ab",
    "abc",
    "b",
    "bc",
    "c",
    "cat",
    "cats",
    "new york",
    "york",
    "new york city",
    "city",
    "st. louis",
    "c++",
    "e-mail",
    "café",
    "naïve",
    "東京",
    "東",
    "京都",
    "straße",
    "ß",
    "İstanbul",
    "🙂",
    "red circle",
    "red",
    "circle",
    "x y z",
    "y",
    "?",
    "don't",
    "über",
    "a a",
]
WORDS = [
    "a",
    "ab",
    "abc",
    "b",
    "c",
    "cat",
    "Cats",
    "category",
    "NEW",
    "York",
    "city",
    "St.",
    "Louis",
    "c++",
    "e-mail",
    "CAFÉ",
    "Café",
    "naïve",
    "東京",
    "東",
    "京都",
    "Straße",
    "STRASSE",
    "İstanbul",
    "🙂",
    "red",
    "circle",
    "x",
    "y",
    "z",
    "?",
    "don't",
    "Über",
    ",",
    ".",
    ";",
    ":",
    "!",
    "`",
    "\t",
    "\n",
    "\r",
    "",
    " ",
    "\u00a0",
    "\u200b",
]


def brute_force(entries: list[str], caption: str) -> list[str]:
    """Every entry whose key occurs in the normalised caption, by `str.__contains__` one entry at a time."""
    text = normalise(caption)
    found = []
    for entry in entries:
        key = entry_key(entry)
        if key and key in text and entry not in found:
            found.append(entry)
    return sorted(found)


def hostile_captions() -> list[str]:
    rng = random.Random(0)
    captions = [
        "",
        " ",
        "\t\n\r",
        ".",
        "a",
        "a a a",
        "ab abc a b",
        "abcabc",
        "New York City.",
        "new  york",
        "new\nyork",
        "new york,city",
        "St. Louis!",
        "c++ code, e-mail",
        "Café naïve über",
        "東京 東 京都",
        "東京東",
        "İstanbul",
        "istanbul",
        "🙂🙂 🙂",
        "a red circle.",
        "red-circle",
        "x y z y",
        "?",
        "don't",
        "cat,cats;category:cat!",
        "\x00 a \x00",
        "ß STRASSE straße",
    ]
    for _ in range(400):
        n = rng.randint(0, 30)
        sep = rng.choice([" ", "", "  ", "\t", ", "])
        captions.append(sep.join(rng.choice(WORDS) for _ in range(n)))
    captions.append(" ".join(rng.choice(WORDS) for _ in range(20000)))  # a very long caption
    captions.append("a " * 50000)
    return captions


def test_automaton_matches_brute_force_on_hostile_captions():
    matcher = EntryMatcher(ENTRIES)
    for caption in hostile_captions():
        got = sorted(matcher.entries[i] for i in matcher.match(caption))
        assert got == brute_force(ENTRIES, caption), caption[:200]


def test_matching_is_on_word_boundaries_lower_cased_and_finds_overlaps():
    matcher = EntryMatcher(ENTRIES)

    def found(caption: str) -> set[str]:
        return {matcher.entries[i] for i in matcher.match(caption)}

    assert found("A CAT.") == {"a", "cat"}
    assert "cat" not in found("category") and "cat" not in found("cats") and "cats" in found("Cats")
    assert found("a red circle") >= {"a", "red", "circle", "red circle"}
    assert found("New York City") >= {"new york", "york", "new york city", "city"}
    assert "a a" in found("a a a") and found("") == set()
    assert "st. louis" in found("St. Louis!") and "café" in found("CAFÉ,") and "東京" in found("東京")
    assert "東" not in found("東京")  # no word boundary inside a run of CJK characters (MetaCLIP's rule)


def test_duplicate_and_blank_entries():
    matcher = EntryMatcher(["Cat", "cat", "  ", "dog"])
    assert matcher.entries == ["Cat", "dog"] and matcher.duplicates == ["cat"]
    assert matcher.match("a CAT and a dog") == [0, 1]
    with pytest.raises(ValueError, match="no metadata entries"):
        EntryMatcher(["", " \t "])


def test_entries_at_or_under_t_keep_every_pair():
    rng = np.random.default_rng(1)
    counts = np.array([100, 101, 5000, 20])  # entries 0 and 3 at/under t=100
    p = keep_probabilities(counts, 100)
    assert p[0] == 1 and p[3] == 1 and p[1] == pytest.approx(100 / 101) and p[2] == pytest.approx(0.02)
    matches = [sorted(rng.choice(4, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(3000)]
    for seed in range(5):
        keep = keep_pairs(matches, 0, p, seed)
        tail = np.array([0 in m or 3 in m for m in matches])
        assert keep[tail].all()
        assert not keep[~tail].all()  # the head alone is sampled
    assert not keep_pairs([[]], 0, p, 0)[0]  # a pair matching nothing is dropped


def test_expected_kept_count_of_a_head_entry_is_t():
    count, t = 5000, 400
    matches = [[0]] * count
    p = keep_probabilities(np.array([count]), t)
    kept = [int(keep_pairs(matches, 0, p, seed).sum()) for seed in range(200)]
    # binomial(5000, 0.08): sd 19.2 per seed, 1.36 for the mean of 200 seeds
    assert abs(np.mean(kept) - t) < 5
    assert 10 < np.std(kept) < 30  # independent draws, not a fixed quota


def test_a_pair_of_several_head_entries_is_kept_with_the_any_rule():
    counts, t = np.array([1000, 2000]), 250  # p = 0.25 and 0.125
    p = keep_probabilities(counts, t)
    matches = [[0, 1]] * 20000
    rate = keep_pairs(matches, 0, p, seed=3).mean()
    assert rate == pytest.approx(1 - (1 - 0.25) * (1 - 0.125), abs=0.01)


def test_draws_depend_on_row_not_order_or_chunking():
    rng = np.random.default_rng(2)
    matches = [sorted(rng.choice(6, size=rng.integers(0, 4), replace=False).tolist()) for _ in range(500)]
    p = keep_probabilities(np.array([900, 50, 3000, 700, 10, 400]), 100)
    whole = keep_pairs(matches, 0, p, seed=7)
    pieces = np.concatenate([keep_pairs(matches[i : i + 37], i, p, seed=7) for i in range(0, 500, 37)])
    assert (whole == pieces).all()
    assert not (whole == keep_pairs(matches, 0, p, seed=8)).all()


def _write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows)


@pytest.fixture
def pairs(tmp_path):
    """A CSV manifest with awkward cells: commas, quotes and newlines in captions, an extra column."""
    rng = random.Random(4)
    (tmp_path / "data" / "img").mkdir(parents=True)
    words = ["red", "blue", "circle", "square", "cat", "dog", "tiny", "big", "the", "a"]
    rows = []
    for i in range(600):
        caption = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        if i % 50 == 7:
            caption = f'a "quoted", odd\ncaption with red, {i}'
        rows.append([f"img/{i:04d}.png", caption, str(i % 3), f"note {i}"])
    path = tmp_path / "data" / "pairs.csv"
    _write_csv(path, rows, ["filepath", "caption", "label", "note"])
    meta = tmp_path / "entries.txt"
    meta.write_text("red\nblue\ncircle\nsquare\ncat\ndog\nunicorn\n", encoding="utf-8")
    return path, meta


def test_curated_csv_keeps_columns_cells_and_input_order(pairs, tmp_path):
    data, meta = pairs
    result = curate_metaclip(data, meta, t=60, out=tmp_path / "out", progress=False, plot=False)
    rows_in, cols_in = read_rows(data)
    rows_out, cols_out = read_rows(result.manifest)
    assert cols_out == cols_in
    assert 0 < len(rows_out) < len(rows_in) and len(rows_out) == result.report["pairs_out"]
    notes = [r["note"] for r in rows_in]
    positions = [notes.index(r["note"]) for r in rows_out]
    assert positions == sorted(positions)  # input order
    for r in rows_out:
        original = rows_in[notes.index(r["note"])]
        assert {k: v for k, v in r.items() if k != "filepath"} == {k: v for k, v in original.items() if k != "filepath"}
        # the relative image path is rebased so that it names the same file from the output's folder
        moved, before = resolve_path(r["filepath"], result.manifest), resolve_path(original["filepath"], data)
        assert moved.resolve() == before.resolve()
    report = result.report
    assert report["pairs_in"] == 600 and report["pairs_matched"] + report["pairs_unmatched"] == 600
    by_entry = {c["entry"]: c for c in report["counts"]}
    assert "unicorn" not in by_entry and report["entries_unmatched"] == 1
    for c in report["counts"]:
        if c["before"] <= 60:
            assert c["after"] == c["before"]
        assert c["after"] <= c["before"]


def test_chunk_size_does_not_change_the_result(pairs, tmp_path):
    data, meta = pairs
    a = curate_metaclip(data, meta, t=60, out=tmp_path / "a", chunk_size=7, progress=False, plot=False)
    b = curate_metaclip(data, meta, t=60, out=tmp_path / "b", chunk_size=100000, progress=False, plot=False)
    assert a.manifest.read_bytes() == b.manifest.read_bytes()
    c = curate_metaclip(data, meta, t=60, out=tmp_path / "c", seed=1, progress=False, plot=False)
    assert c.manifest.read_bytes() != a.manifest.read_bytes()


def test_curated_jsonl_copies_kept_lines_and_reads_list_captions(tmp_path):
    lines = [
        json.dumps({"image": "/abs/0.png", "caption": ["a red thing", "x"], "extra": {"k": [1, 2]}}),
        json.dumps({"image": "/abs/1.png", "caption": "nothing here"}),
        json.dumps({"image": "/abs/2.png", "caption": "Blue — ünïcode", "other": None}, ensure_ascii=False),
        "",
        json.dumps({"image": "/abs/3.png"}),
        json.dumps({"image": "/abs/4.png", "caption": ["", "blue sky"]}),
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = tmp_path / "m.txt"
    meta.write_text("red\nblue\n", encoding="utf-8")
    result = curate_metaclip(data, meta, t=10, out=tmp_path / "out", progress=False, plot=False)
    out_lines = result.manifest.read_text(encoding="utf-8").splitlines()
    assert out_lines == [lines[0], lines[2], lines[5]]  # absolute paths: copied byte for byte
    assert result.report["pairs_in"] == 5 and result.report["pairs_unmatched"] == 2


def test_cli_writes_manifest_report_and_plot(tmp_path, capsys):
    from clipforge.data.shapes.attributes import COLOUR_NAMES, SHAPES
    from clipforge.data.shapes.world import ShapesWorld
    from clipforge.data.shapes.writers import write_csv_dataset

    data = write_csv_dataset(ShapesWorld(seed=0, size=120), tmp_path / "shapes", n=120)
    meta = tmp_path / "entries.txt"
    meta.write_text("\n".join([*SHAPES, *COLOUR_NAMES]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(
        [
            "curate",
            "metaclip",
            "--metadata",
            str(meta),
            "--t",
            "8",
            "--data",
            str(data),
            "--out",
            str(out),
            "--seed",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("curated 120 -> ") and str(out / "curated.csv") in summary
    report = json.loads((out / "metaclip.json").read_text())
    assert report["t"] == 8 and report["pairs_in"] == 120 and 0 < report["pairs_out"] < 120
    assert report["entries"] == len(SHAPES) + len(COLOUR_NAMES)
    assert (out / "entry_counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows, cols = read_rows(out / "curated.csv")
    assert len(rows) == report["pairs_out"] and cols == read_rows(data)[1]
    assert all(resolve_path(r["filepath"], out / "curated.csv").is_file() for r in rows)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--metadata": "missing.txt"}, "metadata file 'missing.txt' does not exist"),
        ({"--t": "0"}, "the balancing threshold t must be a positive number of pairs per entry, got 0.0"),
        ({"--t": "-5"}, "the balancing threshold t must be a positive number of pairs per entry, got -5.0"),
        (
            {"--data": "shapes:100"},
            "'shapes:100' is not a manifest: curation reads a CSV, TSV, JSONL or parquet "
            "manifest with a caption column",
        ),
        ({"--data": "nope.csv"}, "manifest 'nope.csv' does not exist"),
        (
            {"--data": "nocaption.csv"},
            "nocaption.csv: no caption column (tried caption, captions, text, title, "
            "sentence); the columns are ['filepath']",
        ),
        ({"--metadata": "empty.txt"}, "empty.txt: no metadata entries (expected one entry per line)"),
    ],
)
def test_bad_inputs_are_one_clear_error(tmp_path, monkeypatch, capsys, change, message):
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "pairs.csv", [["a.png", "red"]], ["filepath", "caption"])
    _write_csv(tmp_path / "nocaption.csv", [["a.png"]], ["filepath"])
    (tmp_path / "entries.txt").write_text("red\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    args = {"--metadata": "entries.txt", "--t": "10", "--data": "pairs.csv", "--out": "out", **change}
    code = main(["curate", "metaclip", *[x for kv in args.items() for x in kv], "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and err == [f"clipforge curate: error: {message}"]
    assert not (tmp_path / "out" / "curated.csv").exists()


def test_missing_pyahocorasick_is_one_line_before_any_work(tmp_path):
    run = run_cli(
        ["curate", "metaclip", "--metadata", "m.txt", "--data", "d.csv", "--out", "OUT"], ("ahocorasick",), cwd=tmp_path
    )
    one_line_error(run, "curate", "install pyahocorasick (pip install 'clipforge[curate]')")
    assert not (tmp_path / "OUT").exists()


def test_curated_tsv_and_parquet_keep_format_columns_and_order(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    captions = ["red cat", "blue dog", "nothing", "red dog", "a cat", "", "red red red"] * 30
    (tmp_path / "d").mkdir()
    tsv = tmp_path / "d" / "pairs.tsv"
    tsv.write_text(
        "path\ttext\tn\n" + "".join(f"im/{i}.png\t{c}\t{i}\n" for i, c in enumerate(captions)), encoding="utf-8"
    )
    table = pa.table(
        {"image": [f"im/{i}.png" for i in range(len(captions))], "caption": captions, "n": list(range(len(captions)))}
    )
    parquet = tmp_path / "d" / "pairs.parquet"
    pq.write_table(table, parquet)
    meta = tmp_path / "m.txt"
    meta.write_text("red\ncat\ndog\n", encoding="utf-8")
    a = curate_metaclip(tsv, meta, t=20, out=tmp_path / "tsv", chunk_size=11, progress=False, plot=False)
    b = curate_metaclip(parquet, meta, t=20, out=tmp_path / "pq", chunk_size=11, progress=False, plot=False)
    assert a.manifest.name == "curated.tsv" and b.manifest.name == "curated.parquet"
    rows_a, cols_a = read_rows(a.manifest)
    rows_b, cols_b = read_rows(b.manifest)
    assert cols_a == ["path", "text", "n"] and cols_b == ["image", "caption", "n"]
    kept_a, kept_b = [int(r["n"]) for r in rows_a], [r["n"] for r in rows_b]
    assert kept_a == sorted(kept_a) and kept_a == kept_b  # same rows, same draws, whatever the format
    assert all(captions[n] not in ("nothing", "") for n in kept_a)
    assert rows_b[0]["image"] == f"../d/im/{kept_b[0]}.png"
    assert pq.read_schema(b.manifest).names == table.schema.names


def test_the_input_is_never_replaced(pairs):
    data, meta = pairs
    copy = data.with_name("curated.csv")
    copy.write_bytes(data.read_bytes())
    before = copy.read_bytes()
    with pytest.raises(ValueError, match="may not replace its input"):
        curate_metaclip(copy, meta, t=60, out=data.parent, progress=False, plot=False)
    assert copy.read_bytes() == before


def test_a_failed_write_leaves_no_manifest_behind(pairs, tmp_path):
    from clipforge.curate.manifest import ManifestStream, ManifestWriter

    data, _ = pairs
    stream = ManifestStream(data)
    out = tmp_path / "out" / "curated.csv"
    with pytest.raises(RuntimeError, match="boom"):
        with ManifestWriter(stream, out) as writer:
            chunk = next(stream.chunks(10))
            writer.write(chunk, np.ones(10, bool))
            raise RuntimeError("boom")
    assert list(out.parent.iterdir()) == []
    assert [len(c.texts) for c in stream.chunks(250)] == [250, 250, 100]  # bounded chunks, all rows
