"""Results store: provenance, atomic writes, concurrent writers never corrupt a file."""
import json
import multiprocessing as mp
from pathlib import Path

import pytest

from repro.results import (
    load_results,
    provenance,
    read_result,
    result_path,
    write_result,
)


def _prov(**kw):
    return provenance(scale="mini", seed=0, spec_hash="abc", command="test", data="unit test", **kw)


def test_provenance_fields():
    p = _prov()
    for key in ("commit", "code", "spec_hash", "seed", "scale", "data", "versions", "machine", "threads", "date", "command"):
        assert key in p
    assert p["versions"]["torch"]
    assert p["machine"]["cores"] >= 1


def test_write_read_roundtrip(tmp_path):
    path = write_result(tmp_path, scale="mini", paper="tvnet", table=1, row="tvnet-50", job="flow",
                        metrics={"epe": 0.25}, provenance=_prov())
    assert path == result_path(tmp_path, "mini", "tvnet", 1, "tvnet-50", "flow")
    assert path.name == "tvnet-50.flow.json"
    r = read_result(tmp_path, "mini", "tvnet", 1, "tvnet-50", "flow")
    assert r.metrics == {"epe": 0.25} and r.job == "flow" and r.data == "unit test"
    assert list(load_results(tmp_path)) == [("mini", "tvnet", 1, "tvnet-50", "flow")]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_provenance_required(tmp_path):
    with pytest.raises(ValueError, match="commit"):
        write_result(tmp_path, scale="mini", paper="tvnet", table=1, row="x", job="flow", metrics={}, provenance={})


def test_corrupt_result_names_file(tmp_path):
    path = result_path(tmp_path, "mini", "tvnet", 1, "x", "flow")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path)):
        load_results(tmp_path)


def _writer(args):
    root, i = args
    prov = {"commit": "x", "writer": i}
    for k in range(30):
        write_result(root, scale="mini", paper="lgd", table=2, row="r", job="train",
                     metrics={"top1": float(i * 1000 + k)}, provenance=prov, details={"pad": "y" * 20000})
    return i


def test_concurrent_writers_never_corrupt(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert sorted(pool.map(_writer, [(str(tmp_path), 1), (str(tmp_path), 2)])) == [1, 2]
    doc = json.loads(result_path(tmp_path, "mini", "lgd", 2, "r", "train").read_text())
    assert doc["metrics"]["top1"] in (1029.0, 2029.0)
    assert doc["provenance"]["writer"] == int(doc["metrics"]["top1"]) // 1000


def test_redefining_a_builtin_preset_invalidates_train_results_only(monkeypatch):
    import dataclasses

    from repro.data import synth
    from repro.identity import result_key as task_hash
    from repro.spec.loader import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "tvnet" / "table3.yaml")
    row = spec.rows[-1]
    before = {job: task_hash(spec, row, job, "mini") for job in ("train", "flow")}
    monkeypatch.setitem(synth.PRESETS, "mini", dataclasses.replace(synth.PRESETS["mini"], train_per_class=3))
    after = {job: task_hash(spec, row, job, "mini") for job in ("train", "flow")}
    assert after["train"] != before["train"]  # the data a train job reads changed
    assert after["flow"] == before["flow"]  # flow rows render their own GT pairs
    assert task_hash(spec, row, "train", "full") == task_hash(spec, row, "train", "full")


def test_result_key_ignores_fields_left_at_their_default_and_other_scales():
    # a field added to the schema later (with a default) keeps every cached result valid, and so
    # does a change to another scale's recipe (a full-scale schedule says nothing of a mini run)
    from repro.identity import result_key
    from repro.spec.loader import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "tvnet" / "table3.yaml")
    row = spec.rows[-1]
    explicit = row.model_copy(update={"mini": row.mini.model_copy(update={"momentum": 0.9, "motionnet_pretrain": None})})
    changed = row.model_copy(update={"mini": row.mini.model_copy(update={"momentum": 0.5})})
    full_changed = row.model_copy(update={"full": row.full.model_copy(update={"lr": 0.5})})

    def key(new_row, scale="mini"):
        edited = spec.model_copy(update={"rows": [new_row if r.id == row.id else r for r in spec.rows]})
        return result_key(edited, new_row, "train", scale)

    assert key(explicit) == key(row)
    assert key(changed) != key(row)
    assert key(full_changed) == key(row) and key(full_changed, "full") != key(row, "full")


def test_provenance_dirty_flag_ignores_the_harness_outputs(tmp_path):
    # A table run writes its first row's result into results/ and then builds the next row's
    # provenance: that row must not read "dirty". Edited code or specs must.
    import subprocess

    from repro.results import code_is_dirty

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for name in ("results/mini/r.json", "tables/t.md", "repro/m.py", "specs/s.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert code_is_dirty(tmp_path) is False
    (tmp_path / "results/mini/r.json").write_text("1\n")
    (tmp_path / "tables/t.md").write_text("1\n")
    assert code_is_dirty(tmp_path) is False
    (tmp_path / "specs/s.yaml").write_text("1\n")
    assert code_is_dirty(tmp_path) is True


def test_provenance_dirty_counts_untracked_code_and_specs(tmp_path):
    # A new module imported by the code, or a new spec, changes what runs although git tracks
    # neither yet; an untracked scratch file elsewhere does not.  Provenance lists what differs.
    import subprocess

    from repro.results import code_is_dirty, dirty_files

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for name in ("repro/m.py", "specs/s.yaml", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    (tmp_path / "notes.txt").write_text("scratch\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "new.json").write_text("{}\n")
    assert code_is_dirty(tmp_path) is False and dirty_files(tmp_path) == []
    (tmp_path / "repro" / "sub").mkdir()
    (tmp_path / "repro" / "sub" / "new_module.py").write_text("x = 1\n")
    assert code_is_dirty(tmp_path) is True and dirty_files(tmp_path) == ["repro/sub/new_module.py"]
    (tmp_path / "repro" / "sub" / "new_module.py").unlink()
    (tmp_path / "specs" / "new.yaml").write_text("paper: x\n")
    assert dirty_files(tmp_path) == ["specs/new.yaml"]
    (tmp_path / "repro" / "m.py").write_text("1\n")  # a modified tracked file lists first, whole
    assert dirty_files(tmp_path) == ["repro/m.py", "specs/new.yaml"]


def test_provenance_records_code_threads_and_what_is_dirty():
    from repro.identity import code_fingerprint
    from repro.results import provenance

    prov = provenance(scale="mini", seed=0, spec_hash=None)
    assert prov["code"] == code_fingerprint() and isinstance(prov["threads"], int) and prov["threads"] >= 1
    assert prov["dirty"] is None or prov["dirty"] == bool(prov.get("dirty_files"))


def test_profile_and_train_results_of_one_row_keep_two_files(tmp_path):
    """At scale full a row's profile and train results used to share one file and overwrite each other."""
    for job, metrics in (("profile", {"params_m": 15.2}), ("train", {"top1": 34.9})):
        write_result(tmp_path, scale="full", paper="trajectorynet", table=3, row="trajectory_dim4", job=job,
                     metrics=metrics, provenance=_prov())
    results = load_results(tmp_path)
    assert results[("full", "trajectorynet", 3, "trajectory_dim4", "profile")].metrics == {"params_m": 15.2}
    assert results[("full", "trajectorynet", 3, "trajectory_dim4", "train")].metrics == {"top1": 34.9}


def test_migration_renames_results_per_job_and_notes_it(tmp_path):
    from repro.migrations.results_per_job import migrate

    old = tmp_path / "mini" / "tvnet" / "table1" / "tvl1_10.json"
    old.parent.mkdir(parents=True)
    prov = {"commit": "abc", "spec_hash": "1234", "job": "flow"}
    old.write_text(json.dumps({"schema": 1, "paper": "tvnet", "table": 1, "row": "tvl1_10", "scale": "mini",
                               "job": "flow", "metrics": {"epe": 0.5}, "provenance": prov, "details": {}}))
    with pytest.raises(ValueError, match="tvl1_10.json: a result file is named"):
        load_results(tmp_path)  # an old name is an error naming the file, never silently read
    moved = migrate(tmp_path, commit="deadbee")
    assert [(a.name, b.name) for a, b in moved] == [("tvl1_10.json", "tvl1_10.flow.json")]
    r = load_results(tmp_path)[("mini", "tvnet", 1, "tvl1_10", "flow")]
    assert r.metrics == {"epe": 0.5} and r.provenance["spec_hash"] == "1234" and r.provenance["commit"] == "abc"
    assert r.provenance["migrated"] == "from tvl1_10.json at deadbee: results per (row, job)"
    assert migrate(tmp_path) == []  # run twice: nothing left to do


def test_committed_results_are_all_per_job():
    root = Path(__file__).resolve().parents[1] / "results"
    names = [p.name for p in root.rglob("*.json")]
    assert names and all(len(n.split(".")) == 3 for n in names), [n for n in names if len(n.split(".")) != 3]
    assert {p.name for p in (root / "full" / "trajectorynet" / "table3").iterdir()} >= {
        "appearance.profile.json", "trajectory_dim4.profile.json"}


def test_profile_and_train_tasks_of_one_row_at_full_are_both_cached(tmp_path):
    """The planner sees each job's own file: writing one job's result never makes the other stale."""
    from repro.identity import result_key
    from repro.runner import plan_table
    from repro.spec.loader import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "trajectorynet" / "table3.yaml")
    row = spec.row("trajectory_dim4")
    for job, metrics in (("profile", {"params_m": 15.5}), ("train", {"top1": 40.0, "top5": 70.0})):
        write_result(tmp_path, scale="full", paper=spec.paper, table=spec.table, row=row.id, job=job, metrics=metrics,
                     provenance=_prov() | {"spec_hash": result_key(spec, row, job, "full")})
    states = {t.job: t.state for t in plan_table(spec, "full", tmp_path, rows=[row.id])}
    assert states == {"profile": "cached", "train": "cached"}
    # a job that set its own thread count (the profile job restores the caller's) says which it ran with
    assert provenance(scale="full", seed=None, spec_hash=None, threads=1)["threads"] == 1


def test_committed_trained_results_ran_their_specs_recipe():
    """Issue 13: every trained result records ``details.run_config``, and the optimiser, learning
    rate and length it ran with are the spec's for that scale (a spec hash alone certified
    settings that never ran, TVNet Table 1's SGD rows trained with Adam)."""
    from repro.spec.loader import load_spec
    from repro.spec.schema import resolved_config

    root = Path(__file__).resolve().parents[1]
    trained = [r for r in load_results(root / "results").values()
               if r.job == "train" or (r.job == "flow" and r.details.get("training", "none") != "none")]
    assert len(trained) >= 20
    for r in trained:
        ran = r.details.get("run_config")
        assert ran, f"{r.paper} Table {r.table} {r.row} ({r.scale}): no details.run_config"
        spec = load_spec(root / "specs" / r.paper / f"table{r.table}.yaml")
        want = resolved_config(spec.row(r.row).run_config(r.scale))
        for key in ("optimizer", "lr", "epochs"):
            assert ran[key] == want[key], f"{r.paper} Table {r.table} {r.row}: {key} ran {ran[key]!r}, spec {want[key]!r}"
