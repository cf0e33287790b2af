"""`make package`: the wheel carries config/, the EMR archive holds the runtime without what EMR
provides, and both are built reproducibly (tests/deploy builds one release per session: ~1 min)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.deploy import package as pkg
from tests.conftest import REPO

PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
EPOCH = 1_700_000_000  # the release's build time (SOURCE_DATE_EPOCH)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """Built with the checkout's src on PYTHONPATH, as a developer's shell often has it (pip in
    the build venv then saw the project as installed and left the library out). gzip level 1:
    the tests read the archive's members, not its size; level 6 packs it in 27 s here, 1 in 9 s."""
    out = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(REPO / "src"))
        env.setattr(pkg, "COMPRESS_LEVEL", 1)
        pkg.package(out, epoch=EPOCH)
    return out


def _wheel(release: Path) -> Path:
    (wheel,) = release.glob("lakehouse_pipeline-*.whl")
    return wheel


def _members(release: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(release / pkg.ARCHIVE) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_wheel_carries_the_library_and_every_config_file(release):
    names = set(zipfile.ZipFile(_wheel(release)).namelist())
    repo_config = Path(__file__).resolve().parents[2] / "config"
    expected = {f"pipeline/config/{p.relative_to(repo_config)}" for p in repo_config.rglob("*.yaml")}
    assert expected and expected <= names
    assert {
        "pipeline/settings.py",
        "pipeline/jobs.py",
        "pipeline/entry.py",  # what aws/jobs/*.py import
        "pipeline/app/run.py",
        "pipeline/commands/status.py",
        "pipeline/deploy/submit.py",
    } <= names
    templates = Path(__file__).resolve().parents[2] / "src" / "pipeline" / "report" / "templates"
    assert {f"pipeline/report/templates/{p.name}" for p in templates.iterdir()} <= names  # the run report
    assert not [n for n in names if n.startswith(("tests/", "bench/", "pyspark/"))]


def test_installed_wheel_finds_its_config_outside_the_checkout(release, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(_wheel(release)),
        ],
        check=True,
    )
    code = (
        "import pipeline, pipeline.settings as s; st = s.load_settings('prod'); "
        "print(pipeline.__file__); print(s.default_config_dir()); print(st.aws.emr.roles['gold'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), "pipeline must come from the installed wheel"
    assert out[1].startswith(str(target)), "config must come from the installed wheel"
    assert out[2] == "lakehouse-prod-gold"


def test_archive_leaves_out_what_emr_provides_and_runs_the_jobs_beside_emrs_pyspark(release, tmp_path):
    members = _members(release)
    site = f"lib/{PYTHON}/site-packages"
    top = {n[len(site) + 1 :].split("/")[0] for n in members if n.startswith(site + "/")}
    assert {"pipeline", "deltalake", "great_expectations", "boto3", "openlineage", "yaml"} <= top
    assert not {"pyspark", "py4j", "delta"} & top
    assert not [n for n in top if n.startswith(("pyspark-", "py4j-", "delta_spark-"))]
    assert f"{site}/pipeline/config/dev.yaml" in members
    # the interpreter is EMR's, and nothing of the build machine's paths remains
    assert members[f"bin/{PYTHON}"].linkname == f"/usr/bin/{PYTHON}"
    with tarfile.open(release / pkg.ARCHIVE) as tar:
        cfg = tar.extractfile("pyvenv.cfg").read().decode()
        assert "home = /usr/bin" in cfg and "/root" not in cfg and "/tmp" not in cfg
        assert not [n for n in members if n.endswith(".pyc") or n.endswith("direct_url.json")]
        tar.extractall(tmp_path / "env", filter="tar")
    pinned = (release / "requirements-emr.txt").read_text().split()
    installed = {
        p.name.split("-")[0].lower().replace("_", "-") for p in (tmp_path / "env" / site).glob("*.dist-info")
    }
    assert {p.split("==")[0].replace("_", "-") for p in pinned} | {"lakehouse-pipeline"} == installed
    # EMR puts pyspark (and Delta's Python package) on the path; here the test's own copies stand in
    provided = tmp_path / "emr-provided"
    provided.mkdir()
    for name in ("pyspark", "py4j", "delta"):
        (provided / name).symlink_to(Path(__import__(name).__file__).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["PYTHONPATH"] = f"{tmp_path / 'env' / site}:{provided}"
    code = (
        "import pipeline.entry, pipeline.jobs, pipeline.silver.job, pipeline.gold, pipeline.dq.gate, deltalake; "
        "import pipeline; print(pipeline.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(tmp_path / "env"))


def test_checksums_are_those_of_the_files(release):
    lines = (release / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest


def test_wheel_build_is_reproducible(release, tmp_path):
    # A second build at the release's epoch, in another folder, against the release's own wheel.
    again = pkg.build_wheel(tmp_path / "again", epoch=EPOCH)
    assert pkg.sha256(again) == pkg.sha256(_wheel(release))


def _tar(path: Path, entries: list[tuple[str, bytes, int, int]], link: str) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data, mtime, uid in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid, info.uname = len(data), mtime, uid, f"user{uid}"
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(f"bin/{PYTHON}")
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    return path


def test_archive_normalisation_removes_order_times_owners_and_build_paths(tmp_path):
    files = [
        ("lib/a.py", b"a = 1\n", 1, 0),
        ("pyvenv.cfg", b"home = /root/.pyenv/bin\ncommand = /work/x\n", 5, 1000),
        ("lib/__pycache__/a.cpython-311.pyc", b"\x00", 9, 0),
        ("lib/x.dist-info/direct_url.json", b'{"url": "file:///work/dist/x.whl"}', 9, 0),
    ]
    one = _tar(tmp_path / "one.tar", files, f"/usr/bin/{PYTHON}{PYTHON[6:]}")
    reordered = [(n, d, m + 1000, u + 1) for n, d, m, u in reversed(files)]
    two = _tar(tmp_path / "two.tar", reordered, "/root/.pyenv/versions/3.11.7/bin/python3.11")
    a = pkg.normalize(one, tmp_path / "one.tar.gz", epoch=42)
    b = pkg.normalize(two, tmp_path / "two.tar.gz", epoch=42)
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        assert tar.getnames() == sorted(["lib/a.py", "pyvenv.cfg", f"bin/{PYTHON}"])
        assert {(m.mtime, m.uid, m.uname) for m in tar.getmembers()} == {(42, 0, "")}
        assert tar.getmember(f"bin/{PYTHON}").linkname == f"/usr/bin/{PYTHON}"
        assert b"/root" not in tar.extractfile("pyvenv.cfg").read()


def test_a_wheel_for_a_newer_glibc_than_emrs_is_named(tmp_path):
    for name, tag in (
        ("old", "cp311-cp311-manylinux_2_17_x86_64"),
        ("new", "cp311-cp311-manylinux_2_39_x86_64"),
    ):
        info = tmp_path / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")
    assert dict(pkg.wheel_glibc(tmp_path)) == {"old": (2, 17), "new": (2, 39)}
    with pytest.raises(pkg.PackageError, match=r"new \(glibc 2\.39\)") as refused:
        pkg.check_glibc(tmp_path)
    assert "old (glibc" not in str(refused.value)
