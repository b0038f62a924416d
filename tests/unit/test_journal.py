"""The journal file (khaos_controller/journal.py): it rotates, the newest lines in the live file."""

from __future__ import annotations


def test_the_journal_rotates(tmp_path):
    from khaos_controller.journal import Journal, read

    j = Journal(tmp_path / "j.jsonl", fsync=False, max_bytes=2000, keep=3)
    for i in range(200):
        j.write("decision", i=i, pad="x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["j.jsonl", "j.jsonl.1", "j.jsonl.2", "j.jsonl.3"]
    assert all((tmp_path / f).stat().st_size < 2200 for f in files)
    assert read(tmp_path / "j.jsonl")[-1]["i"] == 199  # the newest lines are in the live file
