"""The layers of MedUI, checked on the source: imports only go downwards.

    pages/, app.py  ->  medui.ui  ->  medui.usecases  ->  core  ->  types
                        medui.cli ->  medui.usecases  ->  core  ->  types

core is medui.io, medui.reading, medui.ai, medui.training, medui.synthetic, medui.pacs, medui.results and
medui.accounts; types are medui.series and medui.errors. Within core, medui.io (the readers) imports no other
core package.
Only medui.ui and the pages may import Streamlit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE = ("io", "reading", "ai", "training", "synthetic", "pacs", "results", "accounts", "db")
TYPES = ("series", "errors")


def _layer(module: str) -> str:
    """'pages', 'ui', 'cli', 'usecases', 'core', 'types' or 'other' for a dotted module name."""
    parts = module.split(".")
    if parts[0] in ("pages", "app"):
        return "pages"
    if parts[0] != "medui" or len(parts) == 1:
        return "other"
    top = parts[1]
    if top in ("ui", "usecases", "cli"):
        return top
    if top == "__main__":
        return "cli"
    if top in CORE:
        return "core"
    if top in TYPES:
        return "types"
    return "other"


# What each layer may import from MedUI.
ALLOWED = {
    "pages": {"ui", "types"},
    "ui": {"ui", "usecases", "core", "types"},
    "cli": {"cli", "usecases", "core", "types"},
    "usecases": {"usecases", "core", "types"},
    "core": {"core", "types"},
    "types": {"types"},
}


def _sources() -> list[tuple[str, Path]]:
    out = [("app", ROOT / "app.py")]
    out += [(f"pages.{p.stem}", p) for p in sorted((ROOT / "pages").glob("*.py"))]
    for path in sorted((ROOT / "medui").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from medui import jobs` names a module, not an attribute
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "medui"]
    return found


def test_the_layer_map_knows_every_module():
    unknown = [m for m, _ in _sources() if _layer(m) == "other" and m not in ("medui", "medui.__init__")]
    assert not unknown, f"modules outside every layer (add them to a layer in this test): {unknown}"


@pytest.mark.parametrize("module,path", _sources(), ids=[m for m, _ in _sources()])
def test_imports_only_go_downwards(module, path):
    layer = _layer(module)
    if layer == "other":
        return
    bad = []
    for line, name in _imports(path):
        target = _layer(name)
        if target == "other":
            if name.split(".")[0] == "streamlit" and layer not in ("ui", "pages"):
                bad.append(f"line {line}: imports Streamlit ({name}); only medui.ui and the pages may")
            continue
        if target not in ALLOWED[layer]:
            bad.append(f"line {line}: {layer} module imports {name} ({target})")
        if module.startswith("medui.io") and target == "core" and not name.startswith("medui.io"):
            bad.append(f"line {line}: the readers (medui.io) import another core package ({name})")
    assert not bad, f"{path.relative_to(ROOT)} breaks the layering:\n" + "\n".join(bad)


def test_importing_the_core_and_usecases_loads_no_streamlit():
    """The same rule at run time: what the CLI and job processes import never pulls in Streamlit."""
    code = ("import sys, medui.cli, medui.io.loader, medui.usecases.diagnose, medui.usecases.models, "
            "medui.usecases.train, medui.training.runs; "
            "print([m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')][:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
