"""The product does not depend on the sandbox.

The sandbox (``platforms/sandbox/``) emulates Google Ads and Meta for local runs and tests; it
owns its demo data and the credentials it accepts. Product code learns what it needs from
settings or from the platforms' APIs, so no product module may import the sandbox. Only the
sandbox itself and its launcher (``manage.py sandbox``) may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = (
    "adsplatform",
    "campaigns",
    "conversions",
    "webhooks",
    "optimization",
    "connections",
    "dashboard",
    "platforms",
)
SANDBOX_PACKAGE = "platforms.sandbox"
ALLOWED_TO_IMPORT_SANDBOX = (
    REPO_ROOT / "platforms" / "sandbox",
    REPO_ROOT / "platforms" / "management" / "commands" / "sandbox.py",
)


def _is_sandbox_module(name: str) -> bool:
    return name == SANDBOX_PACKAGE or name.startswith(SANDBOX_PACKAGE + ".")


def sandbox_imports(source: str) -> list[str]:
    """Each import of the sandbox in ``source``, as written (static and ``import_module`` calls)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names if _is_sandbox_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [f"{node.module}.{alias.name}" for alias in node.names]
            if _is_sandbox_module(node.module) or any(_is_sandbox_module(name) for name in imported):
                found.append(f"from {node.module} import {', '.join(alias.name for alias in node.names)}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            func_name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                func_name in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _is_sandbox_module(first.value)
            ):
                found.append(f"{func_name}({first.value!r})")
    return found


def product_modules() -> list[Path]:
    modules: list[Path] = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if not any(path == allowed or allowed in path.parents for allowed in ALLOWED_TO_IMPORT_SANDBOX):
                modules.append(path)
    return modules


@pytest.mark.parametrize(
    "source",
    [
        "import platforms.sandbox",
        "import platforms.sandbox.google.data as demo",
        "from platforms.sandbox.meta import DEMO_PIXEL_ID",
        "from platforms import sandbox",
        "def later():\n    from platforms.sandbox import credentials",
        "import importlib\nimportlib.import_module('platforms.sandbox.google')",
    ],
)
def test_the_scan_recognises_every_form_of_sandbox_import(source: str) -> None:
    assert sandbox_imports(source)


def test_the_scan_ignores_other_platforms_modules() -> None:
    assert sandbox_imports("from platforms import registry\nimport platforms.sandboxing_notes") == []


def test_the_scan_covers_the_product() -> None:
    modules = product_modules()
    assert REPO_ROOT / "platforms" / "registry.py" in modules
    assert REPO_ROOT / "conversions" / "bootstrap.py" in modules
    assert not any((REPO_ROOT / "platforms" / "sandbox") in path.parents for path in modules)


def test_no_product_module_imports_the_sandbox() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): imports
        for path in product_modules()
        if (imports := sandbox_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "product modules import the sandbox; read settings or the platform's API instead"


def sandbox_demo_ids() -> set[str]:
    """The ids of the sandbox's conversion destinations (Google conversion actions, the Meta pixel)
    and of its Meta ad account. (The Google demo customer ids are left out: "1234567890" is also the
    usual example of a customer id in help texts.)"""
    from platforms.sandbox.google.data import GoogleSandboxData
    from platforms.sandbox.meta import DEMO_ACCOUNT_ID, MetaSandboxData

    google_actions = {str(action.id) for action in GoogleSandboxData().conversion_actions}
    return google_actions | {MetaSandboxData().pixel_id, DEMO_ACCOUNT_ID}


def test_no_product_module_writes_out_the_sandboxs_demo_ids() -> None:
    demo_ids = sandbox_demo_ids()
    assert "880000001" in demo_ids and "400000000000001" in demo_ids
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(found)
        for path in product_modules()
        if (found := {demo_id for demo_id in demo_ids if demo_id in path.read_text(encoding="utf-8")})
    }
    assert offenders == {}, "product modules hard-code the sandbox's demo data; discover it from the platform instead"
