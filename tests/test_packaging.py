"""What `pip install .` (not editable) ships: every package folder and the bundled files."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_and_mapped():
    cfg = config()
    mapping = cfg["package-dir"]
    listed = set(cfg["packages"])
    for package, folder in mapping.items():
        assert (ROOT / folder / "__init__.py").exists(), package
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *rel.parts]) if rel.parts else package)
    assert on_disk <= listed, f"packages missing from pyproject: {sorted(on_disk - listed)}"
    assert listed <= set(mapping), "every listed package needs its folder in package-dir"


def test_bundled_files_are_package_data():
    data = config()["package-data"]
    assert "data/*" in data["lam_trt"] and list((ROOT / "lam_trt" / "data").glob("demo_x4.onnx"))
    assert "*.cu" in data["lam_trt.kernels"] and list((ROOT / "kernels").glob("*.cu"))
