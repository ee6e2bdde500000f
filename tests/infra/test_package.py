"""The Lambda artifact builder: deterministic zips, trimming that keeps what we load."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location("package", ROOT / "infra" / "package.py")
assert _spec and _spec.loader
package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package)


def _tree(root: Path) -> None:
    (root / "pyarrow" / "include").mkdir(parents=True)
    (root / "pyarrow" / "include" / "arrow.h").write_text("x" * 100)
    (root / "pyarrow" / "lib.pyx").write_text("cython")
    (root / "pyarrow" / "_flight.so").write_bytes(b"\x7fELF")
    (root / "pyarrow" / "libarrow_flight.so.2600").write_bytes(b"\x7fELF")
    (root / "pyarrow" / "libparquet.so.2600").write_bytes(b"\x7fELF parquet")
    (root / "pyarrow" / "parquet").mkdir()
    (root / "pyarrow" / "parquet" / "core.py").write_text("# used")
    (root / "stream_processor").mkdir()
    (root / "stream_processor" / "__init__.py").write_text("")
    (root / "stream_processor" / "__pycache__").mkdir()
    (root / "stream_processor" / "__pycache__" / "x.pyc").write_bytes(b"0")


def test_trim_removes_only_what_the_lambda_never_loads(tmp_path: Path) -> None:
    _tree(tmp_path)
    freed = package.trim(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "pyarrow/libparquet.so.2600",
        "pyarrow/parquet/core.py",
        "stream_processor/__init__.py",
    ]
    assert freed > 100


def test_zip_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    _tree(tmp_path / "a")
    first = package.deterministic_zip(tmp_path / "a", tmp_path / "one.zip")
    for path in (tmp_path / "a").rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))  # new mtimes must not matter
    second = package.deterministic_zip(tmp_path / "a", tmp_path / "two.zip")
    assert first == second
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names)
        mode = archive.getinfo("pyarrow/libparquet.so.2600").external_attr >> 16
        assert mode & 0o777 == 0o755
