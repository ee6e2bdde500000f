"""Build the Lambda artifact: our package plus the pinned dependencies for arm64 / Python 3.12.

Reproducible: the dependency set is pinned and installed without resolution (--no-deps),
binary wheels only, and the zip has sorted entries with fixed timestamps and modes, so the
same inputs give the same bytes (and the same SHA-256).

Size: the budget is Lambda's 250 MB unzipped limit for a zip function. pyarrow is most of
it; its Flight and Gandiva libraries, C++ headers, Cython sources and tests are
never loaded by the Parquet path and are left out. The zip goes through S3 (CodeBucket), so
the 50 MB direct-upload limit does not apply. A container image would lift the limit to
10 GB but adds a registry and slower cold starts; not needed while the zip fits.

Usage: python infra/package.py [--out dist] [--arch arm64|x86_64] [--python 3.12]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "infra" / "lambda-requirements.txt"
UNZIPPED_LIMIT = 250 * 1024 * 1024
FIXED_TIME = (1980, 1, 1, 0, 0, 0)

#: Paths (relative to the artifact root, glob patterns) never loaded by the Lambda path.
TRIM = (
    "pyarrow/include",
    "pyarrow/tests",
    "pyarrow/src",
    "pyarrow/**/*.pyx",
    "pyarrow/**/*.pxd",
    "pyarrow/**/*.pxi",
    "pyarrow/*flight*",
    "pyarrow/*gandiva*",
    "pyarrow/_pyarrow_cpp_tests*",
    "**/__pycache__",
)


def trim(root: Path, patterns: tuple[str, ...] = TRIM) -> int:
    """Delete what matches `patterns` under `root`; return the bytes freed."""
    freed = 0
    for pattern in patterns:
        for path in sorted(root.glob(pattern), reverse=True):
            if path.is_dir():
                freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path)
            elif path.exists():
                freed += path.stat().st_size
                path.unlink()
    return freed


def deterministic_zip(source: Path, target: Path) -> str:
    """Zip `source` with sorted entries, fixed times and modes; return the SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), FIXED_TIME)
            mode = 0o755 if path.suffix == ".so" or ".so." in path.name else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def build(out: Path, arch: str, python: str) -> Path:
    build_dir = ROOT / "build" / f"lambda-{arch}"
    shutil.rmtree(build_dir, ignore_errors=True)
    platforms = (
        ["manylinux2014_aarch64", "manylinux_2_28_aarch64"]
        if arch == "arm64"
        else ["manylinux2014_x86_64", "manylinux_2_28_x86_64"]
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--target",
        str(build_dir),
        "-r",
        str(REQUIREMENTS),
    ]
    for platform in platforms:
        command += ["--platform", platform]
    print("installing pinned dependencies for", arch, "...", file=sys.stderr)
    subprocess.run(command, check=True)  # noqa: S603 - our own fixed argv
    shutil.copytree(
        ROOT / "stream_processor",
        build_dir / "stream_processor",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    freed = trim(build_dir)
    unzipped = tree_size(build_dir)
    artifact = out / f"stream-processor-lambda-{arch}.zip"
    digest = deterministic_zip(build_dir, artifact)
    print(
        f"{artifact.relative_to(ROOT) if artifact.is_relative_to(ROOT) else artifact}: "
        f"{artifact.stat().st_size / 2**20:.1f} MiB zipped, {unzipped / 2**20:.1f} MiB unzipped "
        f"(limit {UNZIPPED_LIMIT / 2**20:.0f} MiB; trimmed {freed / 2**20:.1f} MiB), "
        f"sha256 {digest}"
    )
    if unzipped > UNZIPPED_LIMIT:
        raise SystemExit("the artifact exceeds Lambda's 250 MB unzipped limit")
    (out / f"stream-processor-lambda-{arch}.zip.sha256").write_text(digest + "\n")
    return artifact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--arch", choices=("arm64", "x86_64"), default="arm64")
    parser.add_argument("--python", default="3.12")
    args = parser.parse_args()
    build(args.out.resolve(), args.arch, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
