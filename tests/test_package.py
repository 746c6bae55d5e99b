"""The package's shape: no import cycle between dalr_hf modules, and a public surface of what users need."""

from __future__ import annotations

import ast
import pathlib

import dalr_hf
import dalr_hf.losses

PACKAGE = pathlib.Path(dalr_hf.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = ["dalr_hf", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: not in functions, classes or TYPE_CHECKING blocks."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
        elif isinstance(node, ast.With):
            stack.extend(node.body)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            for target in targets:
                # importing a module from inside its own package (a parent's __init__) is not a cycle
                if target in modules and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_dalr_hf():
    graph = import_graph()
    assert len(graph) > 30 and "dalr_hf.losses.dalr" in graph["dalr_hf.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_public_surface():
    assert "build_stand_in_feature_store" not in dalr_hf.__all__
    for name in ("DALRLoss", "DALRTrainer", "DALRTrainingArguments", "LossSettings", "PRESETS", "CachedTeachers"):
        assert name in dalr_hf.__all__
    assert all(getattr(dalr_hf, name) is not None for name in dalr_hf.__all__)
    losses = set(dalr_hf.losses.__all__)
    assert not losses & {"check_finite", "sample_mismatch", "kl_batchmean", "embedding_cosine"}
    assert {"DALRLoss", "PRESETS", "LossSettings", "InfoNCELoss", "GroundingLoss", "ConsistencyLoss"} <= losses
    assert {"CrossModalAlignmentLoss", "IntraModalAlignmentLoss", "RankDistillationLoss", "GlobalToLocalLoss"} <= losses
    assert all(hasattr(dalr_hf.losses, name) for name in losses)
    assert dalr_hf.DALRLoss is dalr_hf.losses.DALRLoss and dalr_hf.PRESETS is dalr_hf.losses.PRESETS
