"""`make package`: the wheel and the EMR Python environment of a release, built reproducibly.

- `lakehouse_pipeline-<version>-py3-none-any.whl`: the library, with config/ inside it
  (pipeline/config), so an installed wheel finds its configuration without a checkout.
- `lakehouse_env.tar.gz`: a venv-pack archive for `spark.archives=...#environment` on EMR
  (Python 3.11): the wheel and its runtime dependencies at exactly the versions installed here
  (the ones the tests ran), without pyspark, py4j and delta-spark, which EMR provides. Its
  `bin/python` points at the image's interpreter (`/usr/bin/python3.11`). Binary wheels must run
  on the image's glibc: a package built for a newer one is refused, by name.
- `SHA256SUMS`: checksums of both; `requirements-emr.txt`: what the archive holds.

Reproducible: the wheel is built by the pinned setuptools with SOURCE_DATE_EPOCH set to the last
commit's time; the archive is re-packed in name order with fixed times, owners and gzip header,
without byte code (installed with --no-compile) or install-location records (direct_url.json).
The same commit and the same installed versions give the same bytes, hence the same checksums.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.settings import PROJECT_ROOT

DISTRIBUTION = "lakehouse-pipeline"
PROVIDED_BY_EMR = frozenset({"pyspark", "py4j", "delta-spark"})
EMR_PYTHON_PREFIX = "/usr"  # emr-spark-8.0.0 (Amazon Linux 2023): /usr/bin/python3.11
EMR_GLIBC = (2, 34)  # Amazon Linux 2023
ARCHIVE = "lakehouse_env.tar.gz"
COMPRESS_LEVEL = 6  # gzip 6 packs ~600 MB of site-packages in 25 s here against 65 s at 9, <1 % larger
MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class PackageError(RuntimeError):
    pass


def runtime_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """`name==version` of every runtime dependency of `distribution`, as installed in this
    environment, leaving out what EMR provides (and what only it needs). Sorted."""
    environment = default_environment()
    pinned: dict[str, str] = {}
    todo = [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pinned or name in PROVIDED_BY_EMR:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise PackageError(
                f"{name}: a runtime dependency that is not installed here; run `make setup`"
            ) from None
        pinned[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**environment, "extra": ""}):
                todo.append(req.name)
    pinned.pop(canonicalize_name(distribution))
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def wheel_glibc(site_packages: Path) -> list[tuple[str, tuple[int, int]]]:
    """(distribution, the newest glibc its wheel tags ask for) of every installed binary wheel."""
    found = []
    for wheel_file in sorted(site_packages.glob("*.dist-info/WHEEL")):
        needs = []
        for line in wheel_file.read_text().splitlines():
            if not line.startswith("Tag:"):
                continue
            tag = line.split(":", 1)[1].strip()
            if m := MANYLINUX.search(tag):
                needs.append((int(m.group(1)), int(m.group(2))))
            needs += [v for k, v in LEGACY_MANYLINUX.items() if k in tag]
        if needs:
            found.append((wheel_file.parent.name.split("-")[0], min(needs)))
    return found


def check_glibc(site_packages: Path) -> None:
    """Refuse binary wheels that need a newer glibc than the EMR image has, naming them."""
    too_new = [f"{name} (glibc {a}.{b})" for name, (a, b) in wheel_glibc(site_packages) if (a, b) > EMR_GLIBC]
    if too_new:
        raise PackageError(
            f"built for a newer glibc than EMR's {EMR_GLIBC[0]}.{EMR_GLIBC[1]}: {', '.join(too_new)}; "
            "pin a version with a manylinux_2_34 (or older) wheel"
        )


def build_wheel(out: Path, epoch: int) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    for old in out.glob("lakehouse_pipeline-*.whl"):
        old.unlink()
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(PROJECT_ROOT)], env)
    shutil.rmtree(PROJECT_ROOT / "build", ignore_errors=True)  # setuptools' scratch folder
    (wheel,) = out.glob("lakehouse_pipeline-*.whl")
    return wheel


def build_environment(out: Path, wheel: Path, requirements: list[str]) -> Path:
    """A fresh venv with the wheel and `requirements` (no dependency resolution: the pins are
    the resolution), packed with venv-pack."""
    work = out / "env-build"
    shutil.rmtree(work, ignore_errors=True)
    venv = work / "venv"
    # The new venv sees only itself: with the checkout's src on PYTHONPATH, pip found the
    # project's own metadata there, called the wheel installed and left it out of the archive.
    alone = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}
    _run([sys.executable, "-m", "venv", str(venv)], alone)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", "--no-deps"]
    (out / "requirements-emr.txt").write_text("\n".join(requirements) + "\n")
    _run([*pip, "-r", str(out / "requirements-emr.txt"), str(wheel)], alone)
    check_glibc(next((venv / "lib").glob("python3.*/site-packages")))
    for name in ("setuptools", "pip"):  # the venv's own tools, not the job's (pip last: it does the removing)
        _run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", name], alone, check=False)
    packed = work / "env.tar"
    _run([
        str(Path(sys.executable).parent / "venv-pack"), "-p", str(venv), "-o", str(packed),
        "--python-prefix", EMR_PYTHON_PREFIX, "--quiet", "--force",
    ])  # fmt: skip
    return packed


def normalize(tar_in: Path, out: Path, epoch: int) -> Path:
    """Re-pack venv-pack's tar as a deterministic tar.gz: members in name order (the last of a
    repeated name, as tar itself reads it), fixed mtime and owners, no byte code, no
    install-location records; the interpreter links and pyvenv.cfg point at EMR's Python (venv-pack
    0.2 appends the version twice to `python3.11` and keeps the build machine's paths)."""
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with tarfile.open(tar_in) as src:
        members = {m.name: m for m in src.getmembers() if not _volatile(m.name)}
        with (
            open(out, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=COMPRESS_LEVEL) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as dst,
        ):
            for name in sorted(members):
                member = members[name]
                member.mtime, member.uid, member.gid, member.uname, member.gname = epoch, 0, 0, "", ""
                member.pax_headers = {}
                data = src.extractfile(member) if member.isfile() else None
                if name == f"bin/{python}" and member.issym():
                    member.linkname = f"{EMR_PYTHON_PREFIX}/bin/{python}"
                elif name == "pyvenv.cfg":
                    text = _pyvenv_cfg(python).encode()
                    member.size, data = len(text), io.BytesIO(text)
                dst.addfile(member, data)
    return out


def _pyvenv_cfg(python: str) -> str:
    return (
        f"home = {EMR_PYTHON_PREFIX}/bin\n"
        "include-system-site-packages = false\n"
        f"version = {sys.version_info.major}.{sys.version_info.minor}\n"
        f"executable = {EMR_PYTHON_PREFIX}/bin/{python}\n"
    )


def _volatile(name: str) -> bool:
    return "__pycache__" in name or name.endswith((".pyc", "/direct_url.json", "/INSTALLER"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package(out: Path, epoch: int | None = None) -> dict[str, str]:
    """Build the wheel and the archive into `out`; file name -> sha256 (also in SHA256SUMS)."""
    out.mkdir(parents=True, exist_ok=True)
    epoch = epoch if epoch is not None else _commit_epoch()
    started = time.monotonic()
    wheel = build_wheel(out, epoch)
    packed = build_environment(out, wheel, runtime_requirements())
    built = time.monotonic()
    archive = normalize(packed, out / ARCHIVE, epoch)
    print(f"environment {built - started:.0f}s, archive {time.monotonic() - built:.0f}s")
    shutil.rmtree(out / "env-build", ignore_errors=True)
    sums = {p.name: sha256(p) for p in (wheel, archive)}
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    for name, digest in sums.items():
        print(f"{digest}  {name}  {(out / name).stat().st_size / 1e6:.1f} MB")
    print(f"packaged in {time.monotonic() - started:.0f}s into {out}")
    return sums


def _commit_epoch() -> int:
    try:
        text = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(text.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 315532800  # 1980-01-01, the earliest time a zip (the wheel) can hold


def _run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PackageError(f"{' '.join(cmd[:4])} ... failed ({result.returncode}):\n{result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.deploy.package",
        description="Build the release's wheel (config inside) and EMR venv archive, with SHA256SUMS.",
    )
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "dist", help="output folder (default dist/)"
    )
    args = parser.parse_args(argv)
    try:
        package(args.out)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
