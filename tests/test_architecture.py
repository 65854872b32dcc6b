"""The package's shape: imports point one way and never form a cycle, files stay short.

Every `import` statement counts, at module level or inside a function: a function-level
import hides a cycle from Python but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hart_tf"
MAX_LINES = 500

# What each role may import from hart_tf (besides itself). Read bottom-up: layers know only
# layers; the model knows layers; data knows nothing of the model; train, track and eval sit
# on the model and data (train validates with eval, eval scores trackers); viz draws for
# them and knows nothing; cli knows all.
ALLOWED = {
    "utils": set(),
    "pretrained": set(),
    "layers": {"utils"},
    "model": {"layers", "utils", "pretrained"},
    "data": {"utils"},
    "viz": {"utils"},
    "track": {"layers", "model", "data", "viz", "utils", "pretrained"},
    "eval": {"layers", "model", "data", "viz", "track", "utils", "pretrained"},
    "train": {"layers", "model", "data", "viz", "eval", "track", "utils", "pretrained"},
    "cli": {"layers", "model", "data", "viz", "eval", "track", "train", "utils", "pretrained"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The hart_tf modules that `path` imports (`from pkg import mod` resolves to pkg.mod)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in modules else node.module for n in names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def _role(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_imports_point_one_way():
    wrong = []
    for module, imported in _graph().items():
        role = _role(module)
        if role not in ALLOWED or module.endswith(".__main__"):  # entry-point shims
            continue
        for other in imported:
            other_role = _role(other)
            if other_role and other_role != role and other_role not in ALLOWED[role]:
                wrong.append(f"{module} imports {other}")
    assert not wrong, wrong


def test_only_init_and_entry_points_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "evaluate.py", "export.py"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.name))
def test_files_are_short(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_public_api():
    import hart_tf

    for name in ("HART", "HARTConfig", "Tracker", "load_model"):
        assert getattr(hart_tf, name).__name__ == name


def test_tests_import_helpers_by_module_name():
    """`pytest` (README's command, not `python -m pytest`) puts tests/ on sys.path but not the
    repository root: a test imports another test's helpers as `test_x`, never `tests.test_x`."""
    problems = []
    for path in sorted((PACKAGE.parent / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            problems += [f"{path.name}:{node.lineno}: {name}" for name in names
                         if name == "tests" or name.startswith("tests.")]
    assert not problems, "\n".join(problems)
