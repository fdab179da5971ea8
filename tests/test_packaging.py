"""The distribution: `adapters/` ships as `xai_core.adapters` (regular and editable), py.typed, light import."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # build from a copy: setuptools writes build/ and *.egg-info/ beside the sources
    for package in ("xai_core", "adapters"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("xai_core-*.whl")
    return path


def test_wheel_ships_adapters_inside_xai_core_and_py_typed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "xai_core/adapters/__init__.py" in names
    assert "xai_core/adapters/flax.py" in names
    assert "xai_core/py.typed" in names
    assert not [n for n in names if n.startswith("adapters/")], "no top-level `adapters` package"


def test_regular_install_imports_the_adapters(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    where = run_python(
        "import xai_core.adapters as a; from xai_core.adapters import from_flax; print(a.__file__)",
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
    )
    assert Path(where) == target / "xai_core" / "adapters" / "__init__.py"


def test_checkout_imports_its_adapters_beside_a_regular_install(wheel: Path, tmp_path: Path) -> None:
    """From the repository root Python imports the source tree's `xai_core`, not the installed
    one (`pip install . && python -m xai_core.demo`); its `adapters` must import there too."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # -S: no .pth files, so an editable install of this checkout (the test command's) cannot
    # map the adapters folder; the site-packages stay importable through PYTHONPATH.
    path = os.pathsep.join([str(target), *site.getsitepackages()])
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import xai_core, xai_core.adapters as a; from xai_core.adapters "
         "import from_flax; print(xai_core.__file__); print(a.__file__)"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    where = result.stdout.strip()
    assert [Path(p) for p in where.splitlines()] == [REPO / "xai_core" / "__init__.py", REPO / "adapters" / "__init__.py"]


def test_editable_install_maps_the_adapters_folder(tmp_path: Path) -> None:
    # Every xai-core distribution on the path: a checkout's own xai_core.egg-info (setuptools
    # writes one beside the sources) can come before the installed one's metadata.
    installs = [json.loads(d.read_text("direct_url.json") or "{}") for d in metadata.distributions(name="xai-core")]
    if not any(i.get("dir_info", {}).get("editable") for i in installs):
        pytest.skip("xai-core is not installed in editable mode here (CI installs it with pip install -e)")
    where = run_python("import xai_core.adapters as a; print(a.__file__)", cwd=tmp_path)
    assert Path(where) == REPO / "adapters" / "__init__.py"


def test_import_loads_no_framework(tmp_path: Path) -> None:
    loaded = run_python(
        "import sys, xai_core, xai_core.adapters; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'optax', 'torch', 'tensorflow', 'keras'}))",
        cwd=tmp_path,
    )
    assert loaded == "[]"
