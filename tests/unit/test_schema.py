"""The config files' shared parts (khaos_controller/schema.py): one order for the paths they name."""

from __future__ import annotations

from pathlib import Path

from khaos_controller import REPO_ROOT
from khaos_controller.schema import resolve_path


def test_a_named_path_is_found_in_one_order_beside_the_file_then_here_then_in_the_repository(tmp_path, monkeypatch):
    conf, here = tmp_path / "conf", tmp_path / "here"
    conf.mkdir(), here.mkdir()
    monkeypatch.chdir(here)
    for d in (conf, here):
        (d / "both.csv").write_text("1\n")
    (here / "only-here.csv").write_text("1\n")
    assert resolve_path(conf, "both.csv") == conf / "both.csv"  # beside the config file first
    assert resolve_path(conf, "only-here.csv") == here / "only-here.csv"
    assert resolve_path(conf, "pyproject.toml") == REPO_ROOT / "pyproject.toml"  # the repository's last
    assert resolve_path(conf, "sub/../new.json") == conf / "new.json"  # to be written: beside the file
    assert resolve_path(conf, "/abs/x/../y") == Path("/abs/y")
    assert resolve_path(conf, "~/m.json") == Path.home() / "m.json"
