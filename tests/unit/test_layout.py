"""The layout keeps its promises: docs tables match the schemas, the bastion role's defaults are valid
daemon settings, docs/architecture.md names real sub-packages, the unit tests mirror them, the examples load."""

from __future__ import annotations

import re

import yaml

from khaos_controller import REPO_ROOT
from khaos_controller.control.config import DaemonFile
from khaos_controller.schema import rows, sync_docs, validate


def test_docs_tables_match_the_schemas():
    assert sync_docs(REPO_ROOT) == [], "run: python -m khaos_controller.schema"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_bastion_role_defaults_are_valid_daemon_settings():
    defaults = yaml.safe_load((REPO_ROOT / "roles/khaos_controller/defaults/main.yml").read_text())
    given = defaults["khaos_controller_config_defaults"]
    managed = {"job": "j", "flink": {"rest_url": "http://x:8081"}, "inventory": "i.yml", "model": "m.json"}
    validate(DaemonFile, {**given, **managed}, "role defaults")  # raises on a key or value the daemon refuses
    schema_default = {key: default for key, _t, default, _b, _h in rows(DaemonFile)}
    on_purpose = {"ci.min", "limits.latency_ms", "limits.recovery_s"}  # no schema default / a bastion's choice
    for key, value in _flatten(given).items():
        if key not in on_purpose:
            assert schema_default[key] == f"`{value}`", f"{key} repeats a daemon default differently"
    # the timeout the role derives its systemd stop timeout from is the schema's default
    role_vars = (REPO_ROOT / "roles/khaos_controller/vars/main.yml").read_text()
    timeout = re.search(r"timeout_s \| default\((\d+)\)", role_vars).group(1)
    assert schema_default["reconfigure.timeout_s"] == f"`{timeout}`"


def test_architecture_names_every_sub_package_and_only_real_ones():
    text = (REPO_ROOT / "docs/architecture.md").read_text()
    named = set(re.findall(r"^\| `(\w+)/` \|", text, re.M))
    real = {p.name for p in (REPO_ROOT / "khaos_controller").iterdir() if (p / "__init__.py").exists()}
    assert named == real
    for pkg, mods in re.findall(r"^\| `(\w+)/` \| [^|]+ \| (.+) \|$", text, re.M):
        while re.search(r"\([^()]*\)", mods):
            mods = re.sub(r"\([^()]*\)", "", mods)  # what is said of a module, not module names
        listed = re.findall(r"`(\w+)`", mods)
        assert listed, pkg
        for mod in listed:
            assert (REPO_ROOT / "khaos_controller" / pkg / f"{mod}.py").exists(), (pkg, mod)


def test_the_unit_tests_mirror_the_package():
    """tests/unit/<sub>/ holds the unit tests of khaos_controller/<sub>/ (the top of tests/unit/, those of
    the top-level modules and the cross-cutting ones). pytest imports a test file by its basename (no
    __init__.py under tests/): every basename is unique."""
    unit = REPO_ROOT / "tests" / "unit"
    subs = {p.name for p in unit.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    packages = {p.name for p in (REPO_ROOT / "khaos_controller").iterdir() if (p / "__init__.py").exists()}
    assert subs <= packages, f"tests/unit/ dirs without a package: {sorted(subs - packages)}"
    for sub in subs:
        assert list((unit / sub).glob("test_*.py")), f"tests/unit/{sub}/ has no tests"
    assert not list(unit.rglob("__init__.py"))
    names = [p.name for p in unit.rglob("*.py") if p.name != "conftest.py"]  # (pytest keeps conftests apart)
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


MODULE_LINES = 500  # a module is one concern
FUNCTION_LINES = 80  # a function reads on one screen or two
PARAMETERS = 6  # more: a small dataclass carries them
# Functions that had more parameters when the limit came: the list may only shrink.
MANY_PARAMETERS = {
    "chaos/plan:resolve_targets",
    "chaos/plan:make_plan",
    "control/pacer:Pacer.__init__",
    "control/planner:recommend",
    "demo:_check_args",
    "demo:run",
    "evaluate/report:plot_timeline",
    "evaluate/report:write_html",
    "evaluate/score:score",
    "flink/client:FlinkClient.run_jar",
    "flink/deployment:_bring_up",
    "flink/deployment:_finish",
    "flink/record:new_record",
    "infra/ansible:_prepare",
    "infra/ansible:run_playbook",
    "infra/openstack_keys:pin_host_keys",
    "kafka/recording:record",
    "kafka/replay:replay",
    "model/features:columns",
    "model/fit:_fit_spec",
    "model/predict:predict",
    "profile/bootstrap:write",
    "profile/capacity:annotate",
    "profile/capacity:probe",
    "profile/measure:overloaded_row",
    "profile/workload:record_rate",
}


def _functions():
    """(module, qualified name, lines, parameters) of every function in khaos_controller/ (self, cls not counted)."""
    import ast

    def walk(node, module, prefix):
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                a = n.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                params = len(names) - (names[:1] in (["self"], ["cls"]))
                yield module, prefix + n.name, n.end_lineno - n.lineno + 1, params
                yield from walk(n, module, f"{prefix}{n.name}.")
            elif isinstance(n, ast.ClassDef):
                yield from walk(n, module, f"{prefix}{n.name}.")

    for path in sorted((REPO_ROOT / "khaos_controller").rglob("*.py")):
        module = path.relative_to(REPO_ROOT / "khaos_controller").with_suffix("").as_posix()
        yield from walk(ast.parse(path.read_text()), module, "")


def test_modules_are_one_concern():
    sizes = {
        p.relative_to(REPO_ROOT).as_posix(): len(p.read_text().splitlines())
        for p in (REPO_ROOT / "khaos_controller").rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MODULE_LINES}
    assert not over, f"modules over {MODULE_LINES} lines (split along a concern): {over}"


def test_functions_are_short_and_take_few_parameters():
    functions = list(_functions())
    long = [f"{m}:{q} ({n} lines)" for m, q, n, _p in functions if n > FUNCTION_LINES]
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"
    many = {f"{m}:{q}" for m, q, _n, p in functions if p > PARAMETERS}
    assert many <= MANY_PARAMETERS, f"new functions with over {PARAMETERS} parameters: {sorted(many - MANY_PARAMETERS)}"


def test_the_examples_load(jar_built):
    from khaos_controller.evaluate import config as ev_config
    from khaos_controller.profile import experiment

    assert experiment.load(REPO_ROOT / "examples/experiment-lab.yml").failures == 8
    on_kafka = experiment.load(REPO_ROOT / "examples/experiment-lab-kafka.yml")
    assert on_kafka.failures == 8 and on_kafka.kafka is not None and on_kafka.recovery == "lag"
    assert ev_config.load(REPO_ROOT / "examples/evaluate.yml").copies[-1] == "khaos"
    raw = yaml.safe_load((REPO_ROOT / "examples/controller.yml").read_text())
    validate(DaemonFile, raw, "examples/controller.yml")


def _tracked_text_files() -> list:
    """The repository's tracked files that are text (git's rule: no NUL byte in the first 8000 bytes)."""
    import subprocess

    names = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    out = []
    for name in filter(None, names):
        path = REPO_ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8000]:
            out.append(path)
    return out


def test_the_readme_is_for_a_user_and_short():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, (
        f"README.md has {len(lines)} lines: dated runs go to docs/results/, history to CHANGELOG.md"
    )


def test_the_product_does_not_narrate_how_it_was_made():
    """Work items and their numbers belong to CHANGELOG.md, not to code, docs, tests or examples."""
    words = re.compile(r"(?i)\b(sessions?|issues?)\s*#?\d")
    found = [
        f"{p.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
        for p in _tracked_text_files()
        if p.name != "CHANGELOG.md" or p.parent != REPO_ROOT
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if words.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_bad_input_battery_is_counted_where_the_docs_count_it():
    import test_bad_input

    text = (REPO_ROOT / "docs/architecture.md").read_text()
    cases, bad, good = map(int, re.search(r"(\d+)\s+cases \((\d+) bad, (\d+) good", text).groups())
    assert (bad, good) == (len(test_bad_input.BAD), len(test_bad_input.GOOD)) and cases == bad + good
