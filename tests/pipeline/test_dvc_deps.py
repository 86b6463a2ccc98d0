"""Every library module a DVC stage runs is one of that stage's deps (so `dvc repro` reruns it).

For each stage of dvc.yaml, the import closure of its ``pipelines/*.py`` script is computed
statically (ast over ``src/ticket_triage``, following every ``ticket_triage.*`` import, also the
lazy ones inside functions, and the ``__init__.py`` of each package on the way). A module file
of the closure must be listed in the stage's deps, or lie under a listed folder. The top-level
``ticket_triage/__init__.py`` must be listed too, but its own imports are lazy re-exports for
users (``from ticket_triage import Triage``) that stage code never triggers, so they are not
followed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PKG = "ticket_triage"


def module_file(name: str) -> Path | None:
    """``ticket_triage.a.b`` -> src/ticket_triage/a/b.py or src/ticket_triage/a/b/__init__.py."""
    base = SRC.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path) -> set[str]:
    """The ``ticket_triage`` modules ``path`` imports (anywhere in the file), with their parent
    packages; ``from pkg import name`` counts ``pkg.name`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PKG}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == PKG:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}") is not None}
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in with_parents if module_file(m) is not None}


def closure(script: Path) -> set[Path]:
    """Module files the script can execute."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path == SRC / PKG / "__init__.py":
            continue  # lazy public re-exports: listed, not followed (see the module docstring)
        for mod in imported_modules(path):
            f = module_file(mod)
            if f is not None and f not in seen:
                seen.add(f)
                todo.append(f)
    return seen


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_runs_a_pipelines_script():
    for name, stage in STAGES.items():
        scripts = [d for d in stage.get("deps", []) if str(d).startswith("pipelines/")]
        assert scripts, f"stage {name}: no pipelines/*.py in its deps"
        assert any(s in stage["cmd"] for s in scripts), f"stage {name}: cmd does not run {scripts}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_the_import_closure(name):
    stage = STAGES[name]
    deps = [str(d) for d in stage.get("deps", [])]
    missing: set[str] = set()
    for script in (ROOT / d for d in deps if d.startswith("pipelines/") and d.endswith(".py")):
        missing |= {f.relative_to(ROOT).as_posix() for f in closure(script) if not covered(f, deps)}
    assert not missing, (f"dvc.yaml stage {name!r} runs code it does not depend on; add to its deps: "
                         + ", ".join(sorted(missing)))


def test_the_closure_follows_lazy_imports_and_packages(tmp_path):
    """The walk itself: a lazy import inside a function and the packages on the way count."""
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from ticket_triage.decision.triage import Triage\n")
    files = {f.relative_to(SRC).as_posix() for f in closure(script)}
    assert {"ticket_triage/decision/triage.py", "ticket_triage/decision/__init__.py",
            "ticket_triage/__init__.py", "ticket_triage/schema.py"} <= files
    assert not covered(SRC / PKG / "decision" / "triage.py", ["src/ticket_triage/decision/tri"])
    assert covered(SRC / PKG / "decision" / "triage.py", ["src/ticket_triage/decision"])
