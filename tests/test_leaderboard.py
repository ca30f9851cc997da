"""experiments/leaderboard.py: combining seed runs into one row, and finding scored runs on disk."""
from __future__ import annotations

import importlib.util
import json
import os

import ml_collections
import numpy as np
import pytest
from protocol_checks import config as config_file

_SPEC = importlib.util.spec_from_file_location(
    "leaderboard", os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "leaderboard.py")
)
leaderboard = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(leaderboard)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def _row(sw2: float, coverage: float, seconds: float) -> dict:
    return {
        "by_nfe": {"1": {"sw2": sw2, "mode_coverage": coverage}},
        "updates": 10,
        "batch_size": 4,
        "train_seconds": seconds,
        "network_evaluations": 80.0,
    }


def test_combine_seeds_reports_median_and_range():
    row = leaderboard.combine_seeds([_row(0.3, 0.88, 5.0), _row(0.1, 1.0, 7.0), _row(0.2, 0.96, 6.0)])
    assert row["seeds"] == 3
    assert row["by_nfe"]["1"] == {"sw2": pytest.approx(0.2), "mode_coverage": pytest.approx(0.96)}
    assert row["spread"]["1"]["sw2"] == pytest.approx([0.1, 0.3])
    assert row["spread"]["1"]["mode_coverage"] == pytest.approx([0.88, 1.0])
    assert row["train_seconds"] == 6.0 and row["updates"] == 10
    single = _row(0.3, 0.88, 5.0)
    assert leaderboard.combine_seeds([single]) is single


def test_markdown_shows_seed_ranges():
    report = {
        "benchmark": "grid25",
        "num_samples": 100,
        "noise_floor": {"sw2": 0.1, "mode_coverage": 1.0},
        "teacher": {"euler": {"1": {"sw2": 0.2, "mode_coverage": 1.0}}},
        "students": {
            "sid": leaderboard.combine_seeds([_row(0.3, 0.88, 5.0), _row(0.1, 1.0, 7.0), _row(0.2, 0.96, 6.0)]),
            "kd": _row(0.15, 1.0, 3.0),
        },
    }
    text = leaderboard.markdown(report)
    assert "| sid (3 seeds) | 1 | 0.2 [0.1, 0.3] | 0.96 [0.88, 1] |" in text
    assert "| kd | 1 | 0.15 | 1 |" in text
    assert "median and [min, max]" in text


def test_markdown_adds_a_column_for_a_metric_only_newer_rows_have():
    newer = _row(0.1, 1.0, 2.0)
    newer["by_nfe"]["1"]["mahalanobis"] = 1.5
    report = {
        "benchmark": "grid25",
        "num_samples": 100,
        "noise_floor": {"sw2": 0.1, "mode_coverage": 1.0},
        "teacher": {"euler": {"1": {"sw2": 0.2, "mode_coverage": 1.0, "sample_seconds": 0.5}}},
        "students": {"kd": _row(0.15, 1.0, 3.0), "sid": newer},
    }
    text = leaderboard.markdown(report)
    assert "| method | NFE | sw2 | mode_coverage | mahalanobis |" in text
    assert "| kd | 1 | 0.15 | 1 | – |" in text
    assert "| sid | 1 | 0.1 | 1 | 1.5 |" in text


def test_scored_seed_rows_keep_finished_runs_at_the_current_budget(tmp_path):
    config = ml_collections.ConfigDict({"train": {"num_steps": 10}})
    runs = str(tmp_path)

    def make_run(seed: int, updates: int, num_samples: int, sw2: float) -> None:
        workdir = leaderboard.seed_workdir(runs, "grid25", "sid", seed)
        os.makedirs(workdir)
        json.dump({"updates": updates, "train_seconds": 1.0, "batch_size": 4}, open(os.path.join(workdir, "cost.json"), "w"))
        key = {"num_samples": num_samples, "updates": updates}
        json.dump({"key": key, "row": _row(sw2, 1.0, 1.0)}, open(os.path.join(workdir, "scores.json"), "w"))

    make_run(0, 10, 100, 0.1)
    make_run(1, 10, 50, 0.2)  # scored with another sample count: not this table's
    make_run(2, 7, 100, 0.3)  # interrupted run
    make_run(3, 10, 100, 0.4)
    assert leaderboard.seed_workdir(runs, "grid25", "sid", 3).endswith(os.path.join("grid25", "sid_seed3"))
    rows = leaderboard.scored_seed_rows("grid25", "sid", config, 100, runs)
    assert [r["by_nfe"]["1"]["sw2"] for r in rows] == [0.1, 0.4]
    assert leaderboard.scored_seed_rows("grid25", "dmd", config, 100, runs) == []


def _report(num_samples: int, students: dict) -> dict:
    return {
        "benchmark": "grid25",
        "num_samples": num_samples,
        "noise_floor": {"sw2": 0.1},
        "teacher": {"euler": {"1": {"sw2": 0.5}, "2": {"sw2": 0.25}}, "heun": {"1": {"sw2": 0.5}, "2": {"sw2": 0.2}}},
        "students": students,
    }


def test_committed_rows_survive_a_fresh_checkout_only_while_they_still_hold(tmp_path):
    out = str(tmp_path)
    students = {"kd": _row(0.15, 1.0, 3.0), "sid": leaderboard.combine_seeds([_row(0.3, 0.9, 5.0), _row(0.1, 1.0, 7.0)])}
    json.dump(_report(100, students), open(os.path.join(out, "grid25.json"), "w"))
    committed = leaderboard.committed_report(out, "grid25", 100, (1, 2))
    assert committed is not None
    assert leaderboard.committed_report(out, "grid25", 50, (1, 2)) is None  # another sample count
    assert leaderboard.committed_report(out, "grid25", 100, (1, 2, 4)) is None  # another teacher curve
    assert leaderboard.committed_report(out, "digits", 100, (1, 2)) is None  # nothing committed

    budget = ml_collections.ConfigDict({"train": {"num_steps": 10}, "batch_size": 4})
    longer = ml_collections.ConfigDict({"train": {"num_steps": 20}, "batch_size": 4})
    rows = leaderboard.committed_rows(committed, {"kd": budget, "sid": budget, "dmd": budget})
    assert rows == {"kd": students["kd"], "sid": students["sid"]}  # seed ranges kept as committed
    assert leaderboard.committed_rows(committed, {"kd": longer, "sid": budget}) == {"sid": students["sid"]}
    assert leaderboard.committed_rows(None, {"kd": budget}) == {}


def test_trained_fields_ignore_bookkeeping_and_see_what_a_run_learns():
    config = config_file("digits/vsd", None)  # teacher.workdir: runs/digits/teacher
    fields = leaderboard.trained_fields(config)
    assert "seed" not in fields and "teacher.workdir" not in fields and fields["optim.lr"] == 1e-3
    moved = config.copy_and_resolve_references()
    moved.seed, moved.teacher.workdir, moved.train.checkpoint_every = 3, "/elsewhere/teacher", 7
    assert leaderboard.config_changes(fields, moved) == []
    as_json = json.loads(config.to_json_best_effort())  # a run's saved config: tuples are lists
    as_json["optim"]["warmup_steps"] = float(as_json["optim"]["warmup_steps"])  # 100 == 100.0
    assert leaderboard.config_changes(leaderboard.trained_fields(as_json), config) == []
    for section, field, value in (("optim", "lr", 2e-3), ("dmd", "critic_schedule", ((0, 2),)), ("eval", "nfes", (1, 4))):
        changed = config.copy_and_resolve_references()
        changed[section][field] = value
        assert leaderboard.config_changes(fields, changed) == [f"{section}.{field}"]
    newer = config.copy_and_resolve_references()
    newer.dmd.a_field_added_later = 1.0  # not in the saved config: not compared
    assert leaderboard.config_changes(fields, newer) == []


def test_committed_rows_of_a_changed_config_are_dropped(capsys):
    budget = ml_collections.ConfigDict({"train": {"num_steps": 10}, "batch_size": 4, "optim": {"lr": 1e-3}})
    changed = ml_collections.ConfigDict({"train": {"num_steps": 10}, "batch_size": 4, "optim": {"lr": 1e-4}})
    stamped = {**_row(0.2, 1.0, 3.0), "config": leaderboard.trained_fields(budget)}
    legacy = _row(0.3, 1.0, 3.0)  # committed before rows recorded their config: kept
    committed = _report(100, {"kd": stamped, "sid": stamped, "dmd": legacy})
    rows = leaderboard.committed_rows(committed, {"kd": budget, "sid": changed, "dmd": changed})
    assert rows == {"kd": stamped, "dmd": legacy}
    assert "sid: the committed row was trained from another version of its config (differs in optim.lr)" in capsys.readouterr().out


def test_a_run_trained_from_another_config_is_neither_tabled_nor_reused(tmp_path, capsys):
    config = ml_collections.ConfigDict({"seed": 0, "train": {"num_steps": 10, "log_every": 5}, "batch_size": 4, "optim": {"lr": 1e-3}})
    workdir = str(tmp_path / "grid25" / "sid")
    assert leaderboard.run_config_changes(workdir, config) == []  # nothing trained there yet
    saved = json.loads(config.to_json_best_effort())
    saved["seed"], saved["train"]["log_every"], saved["optim"]["lr"] = 1, 1, 2e-3
    os.makedirs(os.path.join(workdir, "checkpoints", "10", "config"))
    json.dump(saved, open(os.path.join(workdir, "checkpoints", "10", "config", "metadata"), "w"))
    json.dump({"updates": 10, "train_seconds": 1.0, "batch_size": 4}, open(os.path.join(workdir, "cost.json"), "w"))
    json.dump({"key": {"num_samples": 100, "updates": 10}, "row": _row(0.1, 1.0, 1.0)}, open(os.path.join(workdir, "scores.json"), "w"))
    assert leaderboard.run_config_changes(workdir, config) == ["optim.lr"]  # seed and log_every are bookkeeping
    assert leaderboard.scored_row(workdir, config, 100) is None
    assert "trained from another config (differs in optim.lr)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds a run trained from another config"):
        leaderboard.student_row(workdir, config, evaluator=None)
    assert os.path.exists(os.path.join(workdir, "scores.json"))  # the run is left as it was
    saved["optim"]["lr"] = 1e-3
    json.dump(saved, open(os.path.join(workdir, "checkpoints", "10", "config", "metadata"), "w"))
    row = leaderboard.scored_row(workdir, config, 100)
    assert row["config"] == leaderboard.trained_fields(config) and row["by_nfe"] == _row(0.1, 1.0, 1.0)["by_nfe"]


def test_same_curves_tells_a_retrained_teacher_from_the_committed_one():
    committed = _report(100, {})["teacher"]
    nudged = json.loads(json.dumps(committed))
    nudged["heun"]["2"]["sw2"] *= 1.0014  # another machine's floating point (measured): the same teacher
    assert leaderboard.same_curves(nudged, committed, "grid25")
    nudged["heun"]["2"]["sw2"] *= 1.05  # a different teacher
    assert not leaderboard.same_curves(nudged, committed, "grid25")
    assert not leaderboard.same_curves({"euler": committed["euler"]}, committed, "grid25")


def test_results_page_keeps_every_benchmark_table(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "digits.md").write_text("digits table\n")
    (out / "grid25.md").write_text("grid25 table\n")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "results.md"
    page.write_text(f"intro\n{leaderboard.README_START}\nstale\n{leaderboard.README_END}\nafter\n")
    leaderboard.update_results_page(str(out), page=str(page))
    text = page.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert text.index("grid25 table") < text.index("digits table")  # benchmark order, whatever was run last
    assert "![digits](../results/digits.png)" in text  # relative to the page


def test_readme_summary_reads_each_benchmarks_headline_at_one_and_four_nfe():
    summary = leaderboard.summary_markdown(os.path.join(ROOT, "results"))
    committed = {n: json.load(open(os.path.join(ROOT, "results", f"{n}.json"))) for n in leaderboard.HEADLINE}
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header = cells(summary.splitlines()[0])
    kd = cells(next(line for line in summary.splitlines() if line.startswith("| kd |")))
    for name, metric in leaderboard.HEADLINE.items():
        column = header.index(f"{name} {metric} @ 1 NFE")
        assert kd[column] == f"{committed[name]['students']['kd']['by_nfe']['1'][metric]:.3g}"
        assert kd[header.index(f"{name} {metric} @ 4 NFE")] == "–"  # KD's student has one step
    assert "| *noise floor* |" in summary


def test_few_step_rows_train_the_one_step_config_with_a_four_step_generator(tmp_path):
    """``<method>_4step`` is its method's benchmark config (same budget and settings) with a
    4-step generator, scored at 1 and 4 NFE."""
    for name in ("grid25", "digits_gmm", "digits"):
        for method in leaderboard.ONE_STEP_GENERATORS:
            one = leaderboard.student_config(name, method, False, str(tmp_path))
            four = leaderboard.student_config(name, method + "_4step", False, str(tmp_path))
            section = "sid" if "sid" in one else "dmd"
            assert one[section].generator_steps == 1 and tuple(one.eval.nfes) == (1,)
            assert four[section].generator_steps == 4 and tuple(four.eval.nfes) == (1, 4)
            four[section].generator_steps, four.eval.nfes = 1, (1,)
            assert four.to_dict() == one.to_dict()
    assert "dmd2_4step" in leaderboard.METHODS and "add_4step" not in leaderboard.METHODS


def test_a_committed_teacher_snapshot_replaces_training_only_for_its_own_config(tmp_path, capsys):
    config = config_file("grid25/teacher")
    config.train.num_steps = config.train.checkpoint_every = config.train.log_every = 3
    snapshot = str(tmp_path / "results" / "teacher.npz")
    trained = leaderboard.trained_teacher(config, str(tmp_path / "a"), snapshot)  # trains, writes the snapshot
    assert trained["updates"] == 3 and os.path.exists(snapshot)

    restored = leaderboard.trained_teacher(config, str(tmp_path / "fresh_checkout"), snapshot)
    assert restored == trained  # the original training's cost record, not a new one
    assert "restored the teacher" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "fresh_checkout" / "metrics.jsonl")  # nothing was trained there

    bookkeeping = config.copy_and_resolve_references()  # a config that learns the same teacher
    bookkeeping.eval.num_samples = 123
    bookkeeping.train.log_every = 1
    leaderboard.trained_teacher(bookkeeping, str(tmp_path / "fresh_checkout_2"), snapshot)
    assert "restored the teacher" in capsys.readouterr().out

    other = config.copy_and_resolve_references()
    other.seed = 1
    leaderboard.trained_teacher(other, str(tmp_path / "b"), snapshot)
    assert "trained from another config" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "b" / "metrics.jsonl")
    assert leaderboard.snapshot_config(snapshot)["seed"] == 1  # the snapshot follows the retrained teacher

    with np.load(snapshot) as data:  # same config, networks of another shape (changed code)
        edited = dict(data)
    edited["leaf00000"] = np.zeros((1, 1), np.float32)
    np.savez(snapshot, **edited)
    leaderboard.trained_teacher(other, str(tmp_path / "c"), snapshot)
    assert "could not be restored" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "c" / "metrics.jsonl")  # trained instead
    leaderboard.trained_teacher(other, str(tmp_path / "d"), snapshot)
    assert "restored the teacher" in capsys.readouterr().out  # the rewritten snapshot is whole again


def test_the_committed_digits_teacher_snapshot_is_the_configs_teacher():
    """A fresh checkout restores the digits teacher instead of retraining it (and rewriting the
    committed snapshot), as long as the config changes only bookkeeping fields."""
    snapshot = os.path.join(os.path.dirname(__file__), os.pardir, "results", "digits_teacher.npz")
    assert leaderboard.learns_the_same_teacher(leaderboard.snapshot_config(snapshot), leaderboard.teacher_config("digits", False))


def test_quickstart_default_is_the_best_timed_one_step_student_and_keeps_unseen_modes():
    """Issue 25: among the methods whose quickstart was timed under 5 minutes
    (``results/quickstart_timing.json``), the default has the best mean rank of its one-step
    headline over the three benchmarks, and it kept every mode of the random mixtures of
    ``results/unseen_mixtures.json``."""
    from jaxdistill.quickstart import DEFAULT_METHOD

    timing = json.load(open(os.path.join(ROOT, "results", "quickstart_timing.json")))["rows"]
    fast = [r["method"] for r in timing if r["seconds"] < 300]
    assert DEFAULT_METHOD in fast and len(fast) >= 2
    ranks = {m: 0.0 for m in fast}
    for name, metric in leaderboard.HEADLINE.items():
        students = json.load(open(os.path.join(ROOT, "results", f"{name}.json")))["students"]
        for rank, method in enumerate(sorted(fast, key=lambda m: students[m]["by_nfe"]["1"][metric])):
            ranks[method] += rank / len(leaderboard.HEADLINE)
    assert min(ranks, key=ranks.get) == DEFAULT_METHOD
    unseen = json.load(open(os.path.join(ROOT, "results", "unseen_mixtures.json")))
    rows = [r for r in unseen["rows"] if r["model"] == f"{DEFAULT_METHOD} student"]
    assert len({r["seed"] for r in rows}) >= 3 and all(r["modes_kept"] == unseen["components"] for r in rows)


def test_a_row_resumed_from_a_checkpoint_counts_the_train_time_before_it(tmp_path):
    """A row's run stopped part-way (a session's end) is finished by ``train_timed``, and its
    cost record counts the seconds spent before the checkpoint as well as after it."""
    from jaxdistill.build import build
    from jaxdistill.train.engine import Trainer

    config = config_file("grid25/teacher")
    config.train.num_steps, config.train.checkpoint_every = 12, 6
    workdir = str(tmp_path / "run")
    built = build(config)
    half = Trainer(built.objective, built.frozen, config, workdir, built.data_factory, show_progress=False).train(num_steps=6)
    record = leaderboard.train_timed(config, workdir)
    clock = json.load(open(os.path.join(workdir, "train_seconds.json")))
    assert record["updates"] == 12 and clock["6"] <= half.seconds
    assert clock["6"] < clock["12"] <= record["train_seconds"]
    assert leaderboard.train_timed(config, workdir) == record  # finished: reused, not retrained


def test_jaxdistill_eval_defaults_to_each_committed_tables_sample_count():
    """`jaxdistill eval` uses the run's eval.num_samples; every config of a benchmark must give
    the count its committed table was scored at, or a default eval reads on another scale."""
    out = os.path.join(os.path.dirname(__file__), os.pardir, "results")
    for name in ("grid25", "digits_gmm", "digits"):
        table = json.load(open(os.path.join(out, f"{name}.json")))["num_samples"]
        configs = {m: leaderboard.student_config(name, m, False, "runs") for m in ("kd", "dmd2_4step", "ect", "ladd")}
        teacher = leaderboard.teacher_config(name, quick=False)  # None for an exact-mixture teacher
        if teacher is not None:
            configs["teacher"] = teacher
        counts = {m: int(c.eval.num_samples) for m, c in configs.items()}
        assert set(counts.values()) == {table}, (name, counts)


def test_every_method_has_a_card_whose_results_are_its_committed_rows():
    for method in (m for m in leaderboard.METHODS if not m.endswith(leaderboard.FEW_STEP_SUFFIX)):
        card = open(os.path.join(ROOT, "docs", "methods", f"{method}.md")).read()
        rows = card.split(leaderboard.CARD_RESULTS, 1)[1]
        assert rows.strip() == leaderboard.card_markdown(os.path.join(ROOT, "results"), method).strip(), method
    kd = leaderboard.card_markdown(os.path.join(ROOT, "results"), "kd")
    grid25 = json.load(open(os.path.join(ROOT, "results", "grid25.json")))["students"]["kd"]["by_nfe"]["1"]["sw2"]
    assert f"| grid25 | kd | 1 | sw2 {grid25:.4g} |" in kd
