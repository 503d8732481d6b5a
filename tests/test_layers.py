"""The import rules docs/ARCHITECTURE.md states, read off the source: a change that breaks a
layer boundary fails here, in review, before anyone trips over it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "thunder_dagster"
DAGSTER_ALLOWED = ("definitions.py", "cli/", "assets/", "sensors/", "resources/", "jobs/")
DAGSTER_ALLOWED += ("runtime/",)


def modules() -> dict[str, set[str]]:
    """Each module's path under the package, with every module it imports, at any depth."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[path.relative_to(PACKAGE).as_posix()] = imported
    return found


MODULES = modules()


def importing(prefixes: tuple[str, ...]) -> set[str]:
    return {
        name
        for name, imported in MODULES.items()
        if any(module == p or module.startswith(f"{p}.") for module in imported for p in prefixes)
    }


def test_only_the_dagster_folders_import_dagster():
    users = importing(("dagster", "dagster_celery", "dagster_postgres"))
    assert users, "the rule must see the modules that do import Dagster"
    assert sorted(name for name in users if not name.startswith(DAGSTER_ALLOWED)) == []


def test_no_asset_module_imports_another_and_jobs_sensors_and_the_cli_only_name_assets():
    assets = {name for name in MODULES if name.startswith("assets/")}
    for name in assets:
        others = {m for m in MODULES[name] if m.startswith("thunder_dagster.assets")}
        assert others == set(), f"{name} imports {others}"
    for name in MODULES:
        if name.startswith(("jobs/", "sensors/", "cli/", "runtime/", "resources/")):
            assert not any(m.startswith("thunder_dagster.assets") for m in MODULES[name]), name


@pytest.mark.parametrize("library", ["tensorflow", "keras", "tf2onnx"])
def test_tensorflow_loads_only_through_the_modeling_backend(library):
    users = importing((library,))
    assert users <= {"modeling/backend.py", "modeling/graphs.py"}, users
    assert "modeling/backend.py" in users or library == "tf2onnx"


def test_the_server_imports_neither_dagster_nor_tensorflow():
    server = {name for name in MODULES if name.startswith("serving/")}
    assert (
        server & importing(("dagster", "tensorflow", "keras", "thunder_dagster.modeling.backend"))
        == set()
    )


def test_the_model_card_is_read_and_written_in_one_module():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "modeling/cards.py":
            continue
        text = path.read_text()
        for literal in ('"card.json"', '"model.onnx"', '"step.onnx"', '"model.keras"'):
            assert literal not in text, f"{name} names {literal}; use modeling/cards.py"


def test_settings_is_the_only_reader_and_writer_of_the_environment():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "settings.py":
            continue
        text = path.read_text()
        assert "os.environ" not in text and "os.getenv(" not in text, name


def test_the_answering_engine_knows_no_http():
    engine = {"serving/answering.py", "serving/state.py", "serving/errors.py"}
    assert engine & importing(("fastapi", "starlette")) == set()


def test_only_the_task_registry_switches_on_task_names():
    """A new task is one entry of tasks/registry.py: nothing else lists task names."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name.startswith("tasks/"):
            continue
        text = path.read_text()
        for switch in ('in ("classification", "sentiment")', "LABEL_TASKS", "PAIR_TASKS"):
            assert switch not in text, f"{name}: {switch}; ask tasks/registry.py"


def test_no_module_of_the_command_line_passes_250_lines():
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        assert len(path.read_text().splitlines()) <= 250, path.name


CORE = ("documents/", "modeling/", "deployments/", "feedback/", "tracking/", "serving/")
CORE += ("retrieval/", "monitoring/", "access/", "tasks/", "training_plan.py")
CORE += ("home.py", "settings.py", "files.py", "samples.py", "status.py")
DAGSTER_SIDE = ("definitions", "cli.", "assets", "sensors", "jobs", "resources", "runtime")


def test_dependencies_point_down_from_the_dagster_side_to_the_core():
    def reaches(name: str, packages: tuple[str, ...]) -> set[str]:
        return {
            module
            for module in MODULES[name]
            if any(module.startswith(f"thunder_dagster.{package}") for package in packages)
        }

    for name in MODULES:
        if name.startswith(CORE):
            assert reaches(name, DAGSTER_SIDE) == set(), name
        elif name.startswith(("runtime/", "resources/")):
            assert reaches(name, ("definitions", "cli.", "assets", "sensors", "jobs")) == set(), (
                name
            )


def test_a_module_fits_in_400_lines_and_a_function_in_100():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        assert len(text.splitlines()) <= 400, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 100, f"{name}: {node.name} is {length} lines"
