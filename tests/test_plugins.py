"""The packages built on stylex add their commands and training monitors through entry points, and stylex imports
none of them (DESIGN section 2): the installed entry points match pyproject.toml, the commands appear in
`stylex --help`, and a plug-in that fails to import costs one warning line, never the core commands."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest

from stylex.cli import COMMAND_PLUGINS, TRAINING_MONITORS, installed_monitor, load_plugins, main

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_COMMANDS = ["faithfulness", "benchmark", "report", "study"]


DECLARED = {  # as in pyproject.toml
    COMMAND_PLUGINS: {"evaluation": "evaluation.cli:add_commands", "studies": "studies.cli:add_study_commands"},
    TRAINING_MONITORS: {"evaluation": "evaluation.generators:training_monitor"},
}


@pytest.mark.parametrize("group", DECLARED)
def test_installed_entry_points_are_the_declared_ones_and_load(group):
    installed = {entry.name: entry.value for entry in metadata.entry_points(group=group)}
    assert installed == DECLARED[group], (
        "the installed metadata differs from pyproject.toml: reinstall with `pip install -e .` (and delete a stale "
        "stylex_suite.egg-info in the checkout, which shadows the installed metadata)")
    assert [name for name, loaded in load_plugins(group) if callable(loaded)] == sorted(installed)


def test_help_lists_the_plugin_commands_between_run_commands_and_utilities(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and captured.err == ""
    # a command's line is indented by four spaces; its help wraps onto lines indented further
    listed = [match[1] for match in re.finditer(r"^ {4}(\S+)", captured.out, re.MULTILINE)]
    assert listed == ["train-classifier", "train", "eval-classifier", "attfind", "explain", *PLUGIN_COMMANDS,
                      "preview-data", "show-config"]


def test_training_monitor_comes_from_evaluation():
    from evaluation.generators import training_monitor

    assert load_plugins(TRAINING_MONITORS) == [("evaluation", training_monitor)]


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module a source file imports, at the top or inside a function, or names in importlib.import_module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


LAYERS = ("stylex", "baselines", "evaluation", "studies")  # each may import only the ones before it
MAX_MODULE_LINES = 600


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_imports_only_the_layers_below_it(package):
    above = LAYERS[LAYERS.index(package) + 1:]
    sources = sorted((ROOT / package).rglob("*.py"))
    assert sources
    offending = {}
    for source in sources:
        found = sorted(name for name in imported_modules(ast.parse(source.read_text(), str(source)))
                       if name.split(".")[0] in above)
        if found:
            offending[str(source.relative_to(ROOT))] = found
    assert offending == {}


def test_no_module_is_over_600_lines():
    sources = [p for package in (*LAYERS, "benchmarks") for p in (ROOT / package).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_import_check_sees_lazy_imports():
    tree = ast.parse("def f():\n    from evaluation.generators import x\n    importlib.import_module('studies.cli')\n")
    assert imported_modules(tree) == {"evaluation.generators", "studies.cli"}


# ---- a broken plug-in -------------------------------------------------------------------------------------------

@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """An installed distribution (a dist-info folder on sys.path) whose command and monitor plug-ins fail to import:
    one names a module that does not exist, the other a module that raises a two-line error while importing."""
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('first line\\nsecond line')\n")
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{COMMAND_PLUGINS}]\nmissing = no_such_plugin_module:add_commands\nraising = raising_plugin:add\n\n"
        f"[{TRAINING_MONITORS}]\nmissing = no_such_plugin_module:monitor\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_broken_plugin_is_one_warning_line_and_core_commands_still_run(broken_plugins, capsys):
    assert main(["show-config", "--list"]) == 0
    captured = capsys.readouterr()
    assert "demo" in captured.out.split()
    assert captured.err.splitlines() == [
        "warning: plug-in 'missing' (no_such_plugin_module:add_commands) is left out: "
        "ModuleNotFoundError: No module named 'no_such_plugin_module'",
        "warning: plug-in 'raising' (raising_plugin:add) is left out: RuntimeError: first line second line",
    ]


def test_the_working_plugins_still_load_beside_a_broken_one(broken_plugins, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {name}" in listed for name in PLUGIN_COMMANDS)
    monitor = installed_monitor(None, Path("unused"), None, "cpu")  # evaluation's factory only builds a closure
    assert callable(monitor)
    assert "'missing' (no_such_plugin_module:monitor) is left out" in capsys.readouterr().err
