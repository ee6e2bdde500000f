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


def test_both_lambda_handlers_import_only_what_the_artifact_holds(tmp_path: Path) -> None:
    """Every third-party module the handlers' code paths import is in the pinned closure
    (the maintenance handler once needed duckdb, which the artifact lacked), and the
    maintenance work runs without numpy and certifi, which the closure leaves out (pyarrow,
    duckdb and the HTTP stacks use them only when present)."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "sys.modules['numpy'] = None; sys.modules['certifi'] = None  # not in the artifact\n"
        "import stream_processor.lambda_function\n"
        "import stream_processor.analytics.compaction as c\n"
        "import stream_processor.analytics.snapshot as s\n"
        "import stream_processor.adapters.clients, stream_processor.adapters.history_store as h\n"
        "loaded = sorted({m.split('.')[0] for m, v in sys.modules.items() if v is not None})\n"
        "from stream_processor.demo.simulation import history_stream\n"
        "from tests.analytics.test_history_scale import write_history\n"
        f"root = __import__('pathlib').Path({str(tmp_path)!r})\n"
        "write_history(history_stream(3, services=5, churn_per_day=2), root)\n"
        "store = h.LocalHistoryStore(root)\n"
        "built = s.build_snapshots(store, 'ecs-history/').built\n"
        "compacted = c.compact(store, 'ecs-history/').partitions_rewritten\n"
        "print(json.dumps([loaded, built, compacted]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded, built, compacted = json.loads(result.stdout.splitlines()[-1])
    assert built == 3 and compacted == 3  # the maintenance work ran, without numpy
    pins = [
        line.split("==")[0].lower()
        for line in (ROOT / "infra" / "lambda-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    # Import names of the pinned distributions that differ from the distribution name;
    # aws-kinesis-agg puts its generated protobuf modules on the path as top-level names.
    renamed = {
        "attrs": {"attr", "attrs"},
        "aws-kinesis-agg": {"aws_kinesis_agg", "config_pb2", "messages_pb2"},
        "aws-lambda-powertools": {"aws_lambda_powertools"},
        "protobuf": {"google"},
        "python-dateutil": {"dateutil"},
    }
    allowed = set(sys.stdlib_module_names) | {"stream_processor", "cython_runtime"}
    for pin in pins:
        allowed |= renamed.get(pin, {pin.replace("-", "_")})
    outside = [m for m in loaded if m not in allowed and not m.startswith("_")]
    assert outside == [], outside
