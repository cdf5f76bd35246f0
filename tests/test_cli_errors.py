"""Every bad input to every command: exit status 2, one line on stderr naming what is wrong, no
traceback, and nothing half-written (issue 17).  One table, one case per row."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from repro.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, height: int, width: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a few inputs, as cwd; results/tables/runs point inside it."""
    monkeypatch.chdir(tmp_path)
    for var, name in (("REPRO_RESULTS", "results"), ("REPRO_TABLES", "tables"), ("REPRO_WORK", "runs"),
                      ("REPRO_DATA", "data")):
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.delenv("REPRO_DEBUG", raising=False)
    (tmp_path / "notes.txt").write_text("not an image\n")
    _png(tmp_path / "a.png", 32, 32)
    _png(tmp_path / "b.png", 32, 32)
    _png(tmp_path / "wide.png", 32, 48)
    (tmp_path / "existing_file").write_text("x")
    specs = tmp_path / "badspecs" / "tvnet"
    specs.mkdir(parents=True)
    text = (ROOT / "specs" / "tvnet" / "table3.yaml").read_text()
    assert "    batch_size: 128\n" in text
    (specs / "table3.yaml").write_text(text.replace("    batch_size: 128\n", "    batchsize: 128\n", 1))
    return tmp_path


# (id, argv, words the one line must contain)
CASES = [
    ("flow-non-image", ["flow", "notes.txt", "b.png", "--out", "f.flo"], ["notes.txt", "cannot decode image"]),
    ("flow-missing-input", ["flow", "missing.png", "b.png", "--out", "f.flo"], ["missing.png", "not found"]),
    ("flow-size-mismatch", ["flow", "a.png", "wide.png", "--out", "f.flo"], ["same size"]),
    ("flow-bad-out-suffix", ["flow", "a.png", "b.png", "--out", "f.txt"], ["--out f.txt", ".flo or .npy"]),
    ("flow-bad-viz-suffix", ["flow", "a.png", "b.png", "--out", "f.flo", "--viz", "v.jpg"], ["--viz v.jpg", ".png"]),
    ("flow-not-a-video", ["flow", "notes.txt", "--out", "flowdir"], ["notes.txt", "cannot open as a video"]),
    ("flow-unknown-method", ["flow", "a.png", "b.png", "--method", "nosuch", "--out", "f.flo"], ["nosuch"]),
    ("flowbench-tiny-size", ["flowbench", "--size", "3x3"], ["--size", ">= 8"]),
    ("profile-wrong-rank", ["profile", "r2plus1d_18", "--input", "1x3x16x112"], ["5-D", "1x3x16x112x112"]),
    ("profile-bad-shape", ["profile", "r2plus1d_18", "--input", "1x3xfoo"], ["--input", "1x3xfoo"]),
    ("profile-wrong-channels", ["profile", "r2plus1d_18", "--input", "1x4x4x32x32"], ["1x4x4x32x32", "(N, 3, T, H, W)"]),
    ("profile-unknown-model", ["profile", "r2plus1d_81"], ["unknown model", "r2plus1d_18"]),
    ("profile-unknown-row", ["profile", "trajectorynet:table3:nope"], ["has no row 'nope'"]),
    ("synth-onto-file", ["data", "synth", "--out", "existing_file"], ["existing_file", "not a folder"]),
    ("synth-under-file", ["data", "synth", "--out", "existing_file/sub"], ["existing_file is a file"]),
    ("table-unknown-paper", ["table3", "--paper", "nope"], ["unknown paper 'nope'"]),
    ("table-unknown-number", ["table99"], ["no Table 99"]),
    ("table-bad-scale", ["table3", "--scale", "huge"], ["invalid choice: 'huge'"]),
    ("list-unknown-option", ["list", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("list-no-spec-folder", ["list", "--specs", "nowhere"], ["nowhere", "spec folder not found"]),
    ("spec-defaults-typo", ["list", "--specs", "badspecs"], ["defaults, field full.batchsize", "batch_size"]),
    ("train-bad-ref", ["train", "nonsense"], ["row reference", "nonsense"]),
    ("train-unknown-row", ["train", "tvnet:table3:nope"], ["has no row 'nope'"]),
    ("eval-unknown-row", ["eval", "tvnet:table3:nope"], ["has no row 'nope'"]),
    ("unknown-command", ["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ("profile-arg-no-equals", ["profile", "r2plus1d_18", "--arg", "foo"], ["--arg", "key=value"]),
    ("profile-arg-unknown", ["profile", "tvnet_10", "--arg", "nosuch=1"], ["--arg", "nosuch"]),
    ("export-wrong-frames", ["export", "dynamics_static_bninception", "--input", "1x3x2x64x64", "--out", "x.onnx"],
     ["cannot run on input 1x3x2x64x64", "T=1x8", "got (1, 3, 2, 64, 64)"]),
    ("eval-missing-checkpoint", ["eval", "tvnet:table3:tvl1", "--checkpoint", "nothere.pt"], ["nothere.pt", "not found"]),
    ("all-results-is-a-file", ["all", "--no-run", "--results", "existing_file"], ["--results existing_file", "not a folder"]),
    ("report-onto-file", ["report", "--out", "existing_file"], ["--out existing_file", "not a folder"]),
    ("flowbench-no-middlebury", ["flowbench", "--middlebury", "nowhere", "--no-stereo", "--synth-pairs", "0"],
     ["nowhere", "not a folder"]),
    ("flow-missing-weights", ["flow", "a.png", "b.png", "--out", "f.flo", "--weights", "w.pt"], ["--weights", "w.pt"]),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    return rc, capsys.readouterr().err


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("argv,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(workdir, capsys, argv, words):
    before = _tree(workdir)
    rc, err = _run(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO ", "WARNING "))]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and "error:" in lines[0], err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _tree(workdir) == before, "a failed command left files behind"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a read-only folder anyway (the under-a-file case covers the check)")
def test_synth_into_read_only_folder(workdir, capsys):
    ro = workdir / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = _run(["data", "synth", "--out", "ro/bench"], capsys)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "cannot write into ro" in err and not (ro / "bench").exists()


def test_a_bug_is_one_line_exit_1_and_debug_shows_the_traceback(workdir, capsys, monkeypatch):
    import repro.cli as cli

    def broken(args):
        raise TypeError("unexpected thing")

    monkeypatch.setattr(cli, "cmd_list", broken)
    rc, err = _run(["list"], capsys)
    assert rc == 1 and "internal error: TypeError: unexpected thing" in err and "--debug" in err
    assert "Traceback" not in err
    with pytest.raises(TypeError, match="unexpected thing"):
        main(["list", "--debug"])
    monkeypatch.setenv("REPRO_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["list"])
