"""Publishing is one package, and its upload depends on its export, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import dalr_hf

PACKAGE = Path(dalr_hf.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_export_and_card_never_import_the_hub_and_the_hub_uses_the_export():
    publish = PACKAGE / "publish"
    for path in [publish / "export.py", *sorted((publish / "card").glob("*.py"))]:
        assert not any(m.startswith("dalr_hf.publish.hub") for m in _imports(path)), path.name
    assert "dalr_hf.publish.export" in _imports(publish / "hub.py")
    # the former top-level modules are gone, and the template is package data beside the code
    for old in ("export.py", "hub.py", "model_card.py", "publish_cli.py"):
        assert not (PACKAGE / old).exists()
    assert (publish / "templates" / "dalr_model_card.md").is_file()
