"""Layers import only downwards: pages -> medui.ui -> medui.usecases -> core -> types."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("io", "reading", "ai", "training", "synthetic")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {name}" for path in sorted(folder.rglob("*.py"))
            for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in forbidden)]


def test_usecases_import_no_streamlit_and_no_ui():
    assert _offenders(ROOT / "medui" / "usecases", ("streamlit", "medui.ui")) == []


def test_core_imports_no_usecases_ui_or_streamlit():
    upper = ("streamlit", "medui.ui", "medui.usecases")
    found = [o for layer in CORE for o in _offenders(ROOT / "medui" / layer, upper)]
    assert found == []


def test_pages_only_use_the_ui_layer():
    allowed = ("streamlit", "medui.ui", "medui.errors")
    found = [f"{p.relative_to(ROOT)} imports {n}" for p in sorted((ROOT / "pages").glob("*.py"))
             for n in _imports(p) if not any(n == a or n.startswith(a + ".") for a in allowed)]
    assert found == []


def test_importing_the_usecases_loads_no_streamlit():
    code = ("import sys, medui.usecases.diagnose, medui.usecases.models, medui.usecases.train; "
            "print([m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')][:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
