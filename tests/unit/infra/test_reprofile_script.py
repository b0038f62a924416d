"""The re-profile script (roles/khaos_controller/templates/khaos-reprofile.sh.j2), rendered and run with a
stand-in `khaos` on the PATH of its venv: it keeps the newest profile directories only, rotates its own log
past the size limit, and prunes on failure too."""

from __future__ import annotations

import subprocess

import jinja2

from khaos_controller import REPO_ROOT

TEMPLATE = REPO_ROOT / "roles" / "khaos_controller" / "templates" / "khaos-reprofile.sh.j2"
FAKE_KHAOS = """#!/bin/bash
# profile EXP --out DIR | fit CSV --out MODEL --plot PNG | promote MODEL --to FILE
case $1 in
  profile) echo "profiled into $4"; touch "$4/results.csv" ;;
  fit) echo fitted; touch "$4" ;;
  promote) echo "promote: ${PROMOTE:-ok}"; [ "${PROMOTE:-ok}" = ok ] ;;
esac
"""


def setup(tmp_path, keep=3, max_bytes=100):
    venv, state, logs = tmp_path / "venv", tmp_path / "state", tmp_path / "log"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "khaos").write_text(FAKE_KHAOS)
    (venv / "bin" / "khaos").chmod(0o755)
    logs.mkdir()
    base = state / "profiles" / "j"
    for stamp in ("20260101T030000Z", "20260108T030000Z", "20260115T030000Z", "20260122T030000Z"):
        (base / stamp).mkdir(parents=True)
    text = jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined).render(
        ansible_managed="managed",
        khaos_controller_job="j",
        khaos_controller_venv=str(venv),
        khaos_controller_state_dir=str(state),
        khaos_controller_log_dir=str(logs),
        khaos_controller_reprofile_keep=keep,
        khaos_controller_reprofile_log_max_bytes=max_bytes,
        __khaos_controller_app=str(tmp_path / "app"),
        __khaos_controller_experiment_file=str(tmp_path / "exp.yml"),
        __khaos_controller_model_file=str(state / "model.json"),
    )
    script = tmp_path / "reprofile"
    script.write_text(text)
    script.chmod(0o755)
    return script, base, logs / "j.reprofile.log"


def test_the_newest_profiles_stay_and_the_log_rotates(tmp_path):
    script, base, log = setup(tmp_path)
    log.write_text("x" * 200 + "\n")  # past the limit: rotated before this run writes
    subprocess.run([str(script)], check=True, env={"PATH": "/usr/bin:/bin"})
    kept = sorted(p.name for p in base.iterdir())
    assert len(kept) == 3 and kept[:2] == ["20260115T030000Z", "20260122T030000Z"]  # + this run's
    assert (base / kept[2] / "model.json").exists()
    assert log.with_name("j.reprofile.log.1").read_text() == "x" * 200 + "\n"
    text = log.read_text()
    assert "re-profile of j into" in text and "fitted" in text and "promote: ok" in text


def test_a_failed_run_prunes_too_and_fails(tmp_path):
    script, base, log = setup(tmp_path, keep=2)
    run = subprocess.run([str(script)], env={"PATH": "/usr/bin:/bin", "PROMOTE": "worse"})
    assert run.returncode == 1 and len(list(base.iterdir())) == 2
    assert "promote: worse" in log.read_text() and not log.with_name("j.reprofile.log.1").exists()
