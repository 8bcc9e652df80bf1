"""Training checkpoints under faults: damaged files, full disks, leftovers of a kill, resumed metrics."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from clipforge.train import TrainConfig, Trainer, train
from clipforge.train import checkpoint as ckpt_io

BASE = dict(model="tiny", tokenizer="words", workers=0, val_data=None, warmup_steps=1, log_every=1, batch_size=8)


def _cfg(out: Path, **kw) -> TrainConfig:
    return TrainConfig(out_dir=str(out), **{**BASE, "data": ["shapes:64"], **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 6-step run with checkpoints at steps 2, 4 and 6 (its pristine copy: copy it per test)."""
    out = tmp_path_factory.mktemp("train") / "run"
    train(_cfg(out, max_steps=6, save_every=2, keep_last=3), progress=False)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, symlinks=True)
    return dst


def _overwrite_middle(path: Path, size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + size] = b"\xab" * size
    path.write_bytes(bytes(data))


def test_every_checkpoint_has_a_checksum(finished):
    ckpts = finished / "checkpoints"
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == [
        "latest.json",
        "step_00000002.pt", "step_00000002.pt.sha256",
        "step_00000004.pt", "step_00000004.pt.sha256",
        "step_00000006.pt", "step_00000006.pt.sha256",
    ]
    for pt in ckpts.glob("*.pt"):
        digest, name = ckpt_io.checksum_path(pt).read_text().split()
        assert name == pt.name and digest == ckpt_io.sha256_of(pt)  # the `sha256sum -c` format


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(finished, tmp_path, capsys, damage):
    """4 KB overwritten mid-file resumed silently (then diverged to NaN); a truncated file stopped the resume."""
    run = _copy(finished, tmp_path)
    newest = run / "checkpoints" / "step_00000006.pt"
    if damage == "overwritten":
        _overwrite_middle(newest)
    else:
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    trainer = Trainer(_cfg(run, max_steps=6, save_every=2, keep_last=3), progress=False)
    assert trainer.step == 4
    err = capsys.readouterr().err
    assert str(newest) in err and "checksum mismatch" in err, err
    assert "resuming from the newest intact checkpoint instead" in err and "step_00000004.pt" in err
    assert ckpt_io.find_resume(run / "checkpoints") == run / "checkpoints" / "step_00000004.pt"
    expected = torch.load(run / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_a_damaged_checkpoint_named_explicitly_is_refused_by_name(finished, tmp_path):
    run = _copy(finished, tmp_path)
    named = run / "checkpoints" / "step_00000004.pt"
    _overwrite_middle(named)
    with pytest.raises(ValueError, match=r"step_00000004\.pt: cannot resume from this checkpoint \(checksum mismatch"):
        Trainer(_cfg(run, max_steps=6), resume=str(named), progress=False)


def test_no_intact_checkpoint_names_every_refused_file(finished, tmp_path):
    run = _copy(finished, tmp_path)
    for pt in (run / "checkpoints").glob("*.pt"):
        _overwrite_middle(pt)
    with pytest.raises(ValueError, match="no intact checkpoint") as info:
        Trainer(_cfg(run, max_steps=6), progress=False)
    assert all(f"step_0000000{s}.pt" in str(info.value) for s in (2, 4, 6))


def test_legacy_checkpoints_without_checksums_still_resume_and_truncation_is_caught(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    for record in (run / "checkpoints").glob("*.sha256"):
        record.unlink()
    newest = run / "checkpoints" / "step_00000006.pt"
    newest.write_bytes(newest.read_bytes()[:5000])
    assert Trainer(_cfg(run, max_steps=6), progress=False).step == 4
    assert str(newest) in capsys.readouterr().err


def test_corrupt_latest_json_is_named_and_the_files_are_used(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    (run / "checkpoints" / "latest.json").write_text("{not json")
    assert Trainer(_cfg(run, max_steps=6), progress=False).step == 6
    assert str(run / "checkpoints" / "latest.json") in capsys.readouterr().err


def test_resume_writes_no_duplicate_metrics_rows_and_removes_stale_temporaries(finished, tmp_path):
    """A run killed after its last checkpoint repeated the rows logged since; kills left .tmp files behind."""
    run = _copy(finished, tmp_path)
    ckpts = run / "checkpoints"
    for name in ("step_00000006.pt", "step_00000006.pt.sha256", "latest.json"):  # as if killed after step 6's log
        (ckpts / name).unlink()
    stale = [ckpts / ".step_00000006.pt.k1ll3d.tmp", run / "final" / ".model.safetensors.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    before = (run / "metrics.jsonl").read_text().splitlines()
    train(_cfg(run, max_steps=6, save_every=2, keep_last=3), progress=False)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in rows]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4, 5, 6] and len(rows) == len(before)
    assert not any(p.exists() for p in stale)


def test_a_full_disk_is_reported_as_such_with_the_path(tmp_path, monkeypatch):
    """Out of disk mid-write ended in `RuntimeError: [enforce fail at inline_container.cc:672]`."""

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4608 vs 4498")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    message = r"no space left on the device while writing checkpoint .*step_00000003\.pt"
    with pytest.raises(OSError, match=message) as info:
        ckpt_io.save_training_state(tmp_path / "ck", 3, {"x": 1}, keep_last=2)
    assert info.value.errno == errno.ENOSPC
    assert not list((tmp_path / "ck").iterdir())  # nothing half-written left behind


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 256 KB tmpfs (needs root and mount rights; skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_really_full_disk_is_reported_as_such_and_leaves_nothing_behind(tiny_filesystem):
    """The same as above on a real file system that runs out of space mid-write (no simulation)."""
    state = {"weights": torch.randn(256, 1024)}  # 1 MB: four times what the file system holds
    with pytest.raises(OSError, match=r"no space left on the device while writing checkpoint .*step_00000001\.pt"):
        ckpt_io.save_training_state(tiny_filesystem / "ck", 1, state, keep_last=2)
    assert not [p for p in (tiny_filesystem / "ck").rglob("*") if p.is_file()]  # no partial file, no temporary
