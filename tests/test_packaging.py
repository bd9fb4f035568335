"""What `pip install .` (not editable) ships: every package folder and the bundled files."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def config() -> dict:
    return pyproject()["tool"]["setuptools"]


def test_every_package_folder_is_listed_and_mapped():
    cfg = config()
    mapping = cfg["package-dir"]
    listed = set(cfg["packages"])
    data_only = set(cfg["package-data"])
    for package, folder in mapping.items():
        assert (ROOT / folder / "__init__.py").exists() or package in data_only, package
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *rel.parts]) if rel.parts else package)
    assert on_disk <= listed, f"packages missing from pyproject: {sorted(on_disk - listed)}"
    assert listed <= set(mapping), "every listed package needs its folder in package-dir"


def test_bundled_files_are_package_data():
    data = config()["package-data"]
    shipped = {name for pattern in data["lam_trt.data"] for name in
               (p.name for p in (ROOT / "lam_trt" / "data").glob(pattern))}
    files = {p.name for p in (ROOT / "lam_trt" / "data").iterdir() if not p.name.startswith(".")}
    assert shipped == files, "every demo file ships"
    assert "*.cu" in data["lam_trt.kernels"] and list((ROOT / "kernels").glob("*.cu"))


def test_package_data_names_no_subfolder():
    """A subfolder pattern ("data/*") makes setuptools warn "Package would be ignored": a folder
    of data is a package of its own, listed in ``packages``."""
    for package, patterns in config()["package-data"].items():
        assert package in config()["packages"]
        assert not any("/" in p for p in patterns), (package, patterns)


def test_license_is_an_spdx_expression():
    """The ``{text = ...}`` table is deprecated (setuptools warns on every build); a PEP 639 string
    needs setuptools 77 or newer at build time."""
    assert pyproject()["project"]["license"] == "MIT"
    requires = pyproject()["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") and
               int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires), requires


def test_readme_links_docs_that_ship_in_the_repository():
    """README once sent readers to "the shared docs", which no checkout has."""
    import re

    readme = (ROOT / "README.md").read_text()
    assert "shared docs" not in readme and "../shared" not in readme
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert {"docs/DESIGN.md", "docs/LAM-SPEC.md"} <= set(links)
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).is_file(), link
    for doc in ("DESIGN.md", "LAM-SPEC.md"):
        text = (ROOT / "docs" / doc).read_text()
        assert "lam-paper.txt" not in text and "reference/LAM-SPEC" not in text
    assert "LAM_TRT_CACHE" in readme and "lam-trt cache clear" in readme
