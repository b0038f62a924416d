"""The bastion's helpers: the offline wheelhouse and bundle, and the model swap of the re-profile schedule."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.models import rate_model

from khaos_controller.errors import KhaosError
from khaos_controller.infra import bastion
from khaos_controller.model import store


def _with_mape(model, mape: float, tag: str):
    m = model.model_copy(deep=True)
    m.cv.recovery.physics.mape = mape
    m.data_hash = f"sha256:{tag}"
    return m


@pytest.fixture(scope="module")
def base():
    return rate_model()


def test_promote_takes_a_model_that_is_not_worse(tmp_path, base):
    current = store.save(_with_mape(base, 0.20, "old"), tmp_path / "model.json")
    new = store.save(_with_mape(base, 0.15, "new"), tmp_path / "new.json")
    replaced, why = store.promote(new, current)
    assert replaced and "15.0% <= 20.0%" in why, why
    assert store.load(current).data_hash == "sha256:new"
    assert store.load(tmp_path / "model.json.prev").data_hash == "sha256:old"


def test_promote_keeps_the_current_model_when_the_new_one_is_worse(tmp_path, base):
    current = store.save(_with_mape(base, 0.10, "old"), tmp_path / "model.json")
    new = store.save(_with_mape(base, 0.30, "new"), tmp_path / "new.json")
    proc = subprocess.run(
        [sys.executable, "-m", "khaos_controller.cli", "promote", str(new), "--to", str(current), "--strict"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == f"kept {current}: the new model's CV recovery MAPE 30.0% is worse than 10.0%"
    assert store.load(current).data_hash == "sha256:old"
    assert not (tmp_path / "model.json.prev").exists()


def test_promote_into_an_empty_place_and_a_bad_new_model(tmp_path, base):
    new = store.save(_with_mape(base, 0.3, "new"), tmp_path / "new.json")
    replaced, why = store.promote(new, tmp_path / "models" / "job.json")
    assert replaced and "no model before" in why
    (tmp_path / "broken.json").write_text("[]")
    with pytest.raises(KhaosError) as e:
        store.promote(tmp_path / "broken.json", tmp_path / "models" / "job.json")
    assert "\n" not in str(e.value)


def test_wheelhouse_missing_requirements_is_one_line(tmp_path):
    with pytest.raises(KhaosError) as e:
        bastion.wheelhouse(tmp_path / "wh", requirements=tmp_path / "nope.txt")
    assert str(e.value) == f"{tmp_path / 'nope.txt'} does not exist"


def test_bundle_is_byte_stable_and_holds_what_the_daemon_runs(tmp_path):
    import tarfile

    from khaos_controller import REPO_ROOT, __version__

    # a wheel cache that is current: khaos wheelhouse returns it without pip
    wh = tmp_path / "wheels"
    wh.mkdir()
    (wh / "dep-1.0-py3-none-any.whl").write_bytes(b"dep")
    (wh / "khaos_controller-0.1.0-py3-none-any.whl").write_bytes(b"khaos")
    req = REPO_ROOT / "requirements.txt"
    import hashlib

    (wh / ".khaos-wheelhouse.json").write_text(
        json.dumps(
            {
                "requirements_sha256": hashlib.sha256(req.read_bytes()).hexdigest(),
                "khaos": __version__,
                "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            }
        )
    )
    one = bastion.bundle(tmp_path / "a.tar", wh)
    two = bastion.bundle(tmp_path / "b.tar", wh)
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {0}
    for must in (
        "playbooks/reconfigure.yml",
        "roles/flink_job/library/flink_reconfigure.py",
        "ansible.cfg",
        "requirements.txt",
        "wheels/dep-1.0-py3-none-any.whl",
        "wheels/khaos_controller-0.1.0-py3-none-any.whl",
    ):
        assert must in names, must
    assert names == sorted(names) and not [n for n in names if "__pycache__" in n]
    mtime = one.stat().st_mtime_ns
    bastion.bundle(one, wh)  # unchanged content: the file is not rewritten
    assert one.stat().st_mtime_ns == mtime
