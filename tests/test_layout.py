"""The package layout holds: imports only run down the layers, the families never import each
other, the engine imports no family, no function is over 80 lines (scripts/check_layout.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_layout", ROOT / "scripts" / "check_layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_package_keeps_its_layers():
    problems, functions, edges = _checker().check(ROOT / "src" / "mlmkit")
    assert problems == [] and edges > 50
    assert functions[0][0] <= 80


def test_the_check_catches_an_upward_import_a_family_loop_and_a_long_function(tmp_path):
    pkg = tmp_path / "mlmkit"
    for sub in ("engine", "token_mlm", "char_mlm"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "loop.py").write_text("def f():\n    from ..token_mlm import task\n")
    (pkg / "char_mlm" / "task.py").write_text("from mlmkit.token_mlm.masking import TokenMasker\n")
    (pkg / "token_mlm" / "task.py").write_text("def g():\n" + "    x = 1\n" * 90)
    problems, _, _ = _checker().check(pkg)
    assert any("mlmkit.engine.loop imports mlmkit.token_mlm" in p and "layer 4 above its own 3" in p for p in problems)
    assert any("must not import each other" in p for p in problems)
    assert any("g is 91 lines" in p for p in problems)
