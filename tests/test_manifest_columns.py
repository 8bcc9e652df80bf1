"""A manifest with any documented column alias works alike in train, eval, index, classify and embed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipforge.cli.main import main
from clipforge.data.columns import CAPTION_COLUMNS, IMAGE_COLUMNS

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def _manifest(root, image_col: str, caption_col: str, suffix: str):
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(6):
        name = "red" if i % 2 else "blue"
        Image.new("RGB", (40, 40), COLOURS[name]).save(root / "img" / f"{i}.png")
        rows.append({image_col: f"img/{i}.png", caption_col: f"a {name} square", "label": name})
    path = root / f"m{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        header = [image_col, caption_col, "label"]
        path.write_text("\n".join([sep.join(header)] + [sep.join(r[h] for h in header) for r in rows]) + "\n")
    return path


@pytest.mark.parametrize("image_col", IMAGE_COLUMNS)
def test_image_alias_everywhere(image_col, model_dir, tmp_path, capsys):
    caption_col = CAPTION_COLUMNS[len(image_col) % len(CAPTION_COLUMNS)]
    suffix = (".csv", ".tsv", ".jsonl")[len(image_col) % 3]
    m = _manifest(tmp_path, image_col, caption_col, suffix)
    model = ["--model", str(model_dir)]

    assert main(["embed", str(m), "--out", str(tmp_path / "emb"), *model]) == 0
    assert np.load(tmp_path / "emb" / "image_embeddings.npy").shape == (6, 32)

    capsys.readouterr()
    assert main(["classify", str(m), "--labels", "red,blue", "--json", *model]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]) == 6

    assert main(["index", "build", str(m), "--out", str(tmp_path / "idx"), *model]) == 0
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["count"] == 6

    ev = ["eval", "--task", "zeroshot", "--dataset", str(m), "--out", str(tmp_path / "ev"), "--no-cache", "--no-plots"]
    assert main([*ev, "--quiet", *model]) == 0
    result = json.loads(next((tmp_path / "ev").rglob("*.json")).read_text())
    assert result["dataset"]["n_images"] == 6 and result["dataset"]["n_captions"] == 6

    from clipforge.data.pairs import open_pairs

    source = open_pairs(str(m))
    assert len(source) == 6 and source.item(3)[1] == "a red square"
    assert source.item(0)[0].endswith("0.png")
