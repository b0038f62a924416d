"""A rerun of a profile into the same output keeps the units that finished, runs only the rest, and never
mixes results of two experiment files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support import SMALL_EXPERIMENT

from khaos_controller.errors import KhaosError
from khaos_controller.journal import Journal
from khaos_controller.profile import experiment, resume

EXP = SMALL_EXPERIMENT


def row(unit: str, mode: str, recovery_s: float) -> dict:
    ci, rate = unit.split("-ci")[1].split("-r")
    return {"unit": unit, "ci_s": float(ci), "rate": float(rate), "mode": mode, "rep": 0, "recovery_s": recovery_s}


def journal_of(out, fingerprint: str, done: dict[str, list[dict]], torn_tail: bool = False):
    j = Journal(out / "journal.jsonl", fsync=False)
    j.write("start", experiment="exp.yml", experiment_sha256=fingerprint, failures=8)
    for unit, rows in done.items():
        j.write("deploy", unit=unit)
        j.write("unit_done", cluster="c1", unit=unit, rows=rows)
    j.write("deploy", unit="u04-ci4-r3000")  # a unit that never finished
    if torn_tail:
        with open(out / "journal.jsonl", "a") as fh:
            fh.write('{"event": "unit_do')


@pytest.fixture
def exp(tmp_path, jar_built):
    p = tmp_path / "exp.yml"
    p.write_text(EXP)
    return experiment.load(p)


def test_finished_units_are_kept_and_only_the_rest_run(exp, tmp_path):
    from khaos_controller.profile.profiler import Profiler

    out = tmp_path / "out"
    first = [row("u01-ci12-r1000", "process", 9.5), row("u01-ci12-r1000", "host", 21.0)]
    journal_of(out, resume.fingerprint(exp.path), {"u01-ci12-r1000": first}, torn_tail=True)
    prof = Profiler(exp, out=out, progress=False)
    assert [u.ident for u in prof.pending()] == ["u02-ci12-r3000", "u03-ci4-r1000", "u04-ci4-r3000"]
    assert "resuming: 1 units finished earlier are kept, 3 to run" in prof.describe()
    assert prof.reused == {"u01-ci12-r1000": first}


def test_a_profile_whose_units_all_finished_writes_the_results_without_a_lab(exp, tmp_path):
    from khaos_controller.profile.profiler import Profiler

    out = tmp_path / "out"
    idents = [u.ident for u in Profiler(exp, out=out, progress=False).units()]
    done = {u: [row(u, m, 10.0 + i) for m in ("process", "host")] for i, u in enumerate(idents)}
    journal_of(out, resume.fingerprint(exp.path), done)
    prof = Profiler(exp, out=out, progress=False)
    df = prof.run()  # no cluster: a lab would need root and minutes
    assert prof.pending() == [] and prof.clusters == [] and len(df) == 8
    assert sorted(df["recovery_s"].unique()) == [10.0, 11.0, 12.0, 13.0]
    assert (out / "results.csv").exists()
    last = json.loads((out / "journal.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "end" and last["reused"] == 4


def test_units_of_another_experiment_file_are_refused_in_one_line(exp, tmp_path):
    from khaos_controller.profile.profiler import Profiler

    out = tmp_path / "out"
    journal_of(out, "0123456789abcdef", {"u01-ci12-r1000": [row("u01-ci12-r1000", "process", 9.5)]})
    with pytest.raises(KhaosError, match=r"holds finished units of another experiment file: give another --out"):
        Profiler(exp, out=out, progress=False)


def test_a_damaged_line_inside_the_journal_is_an_error_not_a_guess(tmp_path):
    (tmp_path / "journal.jsonl").write_text('{"event": "start", "experiment_sha256": "a"}\nnot json\n{}\n')
    with pytest.raises(KhaosError, match=r"line 2: not JSON"):
        resume.finished(tmp_path / "journal.jsonl", "a")


def test_no_journal_means_nothing_to_resume(tmp_path):
    assert resume.finished(tmp_path / "missing" / "journal.jsonl", "a") == {}
    (tmp_path / "exp.yml").write_text(EXP)
    (tmp_path / "other.yml").write_text(EXP + "\n# a comment changes the file\n")
    assert resume.fingerprint(tmp_path / "exp.yml") != resume.fingerprint(tmp_path / "other.yml")


def test_a_resumed_profile_keeps_the_first_probe_of_its_own_experiment(tmp_path):
    j = Journal(tmp_path / "journal.jsonl", fsync=False)
    j.write("start", experiment_sha256="other")
    j.write("capacity_probe", cluster="c1", capacity=9999.0)
    for capacity in (3538.0, 3201.0):  # this experiment's first run, then its first resume
        j.write("start", experiment_sha256="mine")
        j.write("capacity_probe", cluster="c1", capacity=capacity)
    j.write("capacity_probe", cluster="c2", capacity=2000.0)
    assert resume.probed(tmp_path / "journal.jsonl", "mine") == {"c1": 3538.0, "c2": 2000.0}
    assert resume.probed(tmp_path / "missing.jsonl", "mine") == {}


def test_kept_capacities_are_probed_as_a_warm_up_but_keep_the_rates_of_the_first_run(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from khaos_controller.profile import capacity

    probed = []

    def fake_probe(cluster, *args, **kw):
        probed.append(cluster)
        return capacity.Probe(cluster, 3201.0, 3201.0, 3000.0, 2300.0, 3600.0, 40.0, 120.0)

    monkeypatch.setattr(capacity, "probe", fake_probe)
    spec = SimpleNamespace(probe_ci_s=120.0, probe_rate=20000.0, warmup_s=30.0, measure_s=40.0)
    job = SimpleNamespace(args=["--rate", "{rate}"], config={}, name="j", jar="j.jar", parallelism=1)
    exp = SimpleNamespace(capacity=spec, checkpoint_intervals=[2.0, 120.0], job=job)
    c1 = SimpleNamespace(name="c1", capacity=None, rest_url="http://127.0.0.1:9", shared_dir=None, savepoint=None)
    said: list[str] = []
    j = Journal(tmp_path / "journal.jsonl", fsync=False)
    capacity.probe_all(exp, [c1], j, said.append, own=None, kept={"c1": 3538.0})
    assert probed == ["c1"] and c1.capacity == 3538.0  # warmed up, the first run's capacity kept
    assert said[-1] == "capacity of c1: 3538 events/s as the run this one resumes probed (3201 now)"
    line = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert (line["event"], line["capacity"], line["probed_now"]) == ("capacity_kept", 3538.0, 3201.0)


def test_only_runs_the_named_units_and_a_pattern_naming_none_is_one_line(exp, tmp_path):
    from khaos_controller.profile.profiler import Profiler

    out = tmp_path / "out"
    first = [row("u01-ci12-r1000", "process", 9.5)]
    journal_of(out, resume.fingerprint(exp.path), {"u01-ci12-r1000": first})
    prof = Profiler(exp, out=out, progress=False, only=["*-ci4-*", "u01-*"])
    assert [u.ident for u in prof.pending()] == ["u03-ci4-r1000", "u04-ci4-r3000"]  # u01 finished earlier
    assert "only: 2 units matching *-ci4-*, u01-* still to run (--only)" in prof.describe()
    with pytest.raises(KhaosError, match=r"^--only '\*-ci7-\*' names no unit of this experiment"):
        Profiler(exp, out=out, progress=False, only=["*-ci7-*"]).pending()


def test_the_dry_run_marks_the_units_only_leaves_out(exp, tmp_path, capsys):
    from khaos_controller import cli

    cli.main(["profile", str(exp.path), "--out", str(tmp_path / "o"), "--dry-run", "--only", "*-ci4-*"])
    text = capsys.readouterr().out
    assert "unit u01-ci12-r1000: process #1, host #1 (not chosen)" in text
    assert "unit u03-ci4-r1000: process #1, host #1\n" in text


def test_a_cancelled_profile_writes_the_rows_of_its_finished_units(exp, tmp_path, monkeypatch):
    from khaos_controller.profile.profiler import Cancelled, Profiler

    out = tmp_path / "out"
    first = [row("u01-ci12-r1000", "process", 9.5), row("u01-ci12-r1000", "host", 21.0)]
    journal_of(out, resume.fingerprint(exp.path), {"u01-ci12-r1000": first})
    prof = Profiler(exp, out=out, progress=False)

    def cancelled_while_labs_come_up():
        prof.cancel.set()
        raise Cancelled("cancelled")

    monkeypatch.setattr(prof, "_setup_clusters", cancelled_while_labs_come_up)
    with pytest.raises(Cancelled):
        prof.run()
    assert sorted(pd.read_csv(out / "results.csv")["recovery_s"]) == [9.5, 21.0]


def test_redo_measures_a_finished_unit_again_and_a_pattern_naming_none_is_one_line(exp, tmp_path):
    from khaos_controller.profile.profiler import Profiler

    out = tmp_path / "out"
    first = [row("u01-ci12-r1000", "process", 9.5)]
    journal_of(out, resume.fingerprint(exp.path), {"u01-ci12-r1000": first, "u02-ci12-r3000": first})
    prof = Profiler(exp, out=out, progress=False, redo=["u01-*"])
    assert [u.ident for u in prof.pending()] == ["u01-ci12-r1000", "u03-ci4-r1000", "u04-ci4-r3000"]
    assert list(prof.reused) == ["u02-ci12-r3000"]
    with pytest.raises(KhaosError, match=r"^--redo 'u9\*' names no unit of this experiment"):
        Profiler(exp, out=out, progress=False, redo=["u9*"])
    # a later unit_done line of the same unit is the one a rerun keeps
    Journal(out / "journal.jsonl", fsync=False).write("unit_done", unit="u01-ci12-r1000", rows=[{"redone": 1}])
    assert resume.finished(out / "journal.jsonl", resume.fingerprint(exp.path))["u01-ci12-r1000"] == [{"redone": 1}]
