"""The package as a user installs it: its version, and a wheel built from the sources that works on its own.

The wheel test builds the sdist and, from it, the wheel (``python -m build --no-isolation``: offline, with this
environment's setuptools), installs the wheel into a fresh virtual environment and runs the library, an example
and the ``lstsd`` command there, from an empty folder, so that nothing can come from this source tree. The new
environment borrows this one's packages (torch, numpy, the harness's) through a folder of links that leaves out
this environment's own lstsd (an editable install of the tree) and is placed after the new environment's
site-packages: nothing large is downloaded or copied, and ``pip install --no-index`` proves the wheel's
declared requirements are met without reaching an index.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import lstsd
from lstsd.harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "lstsd"


def _pyproject_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert found, "pyproject.toml names the version under [project]"
    return found.group(1)


def test_the_version_is_the_installed_distributions():
    assert lstsd.__version__ == importlib.metadata.version("lstsd")
    assert lstsd.__version__ == _pyproject_version(), \
        "the installed metadata is older than pyproject.toml: reinstall (make venv, or pip install -e .)"


def test_the_changelog_records_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(_pyproject_version())}\]", changelog, flags=re.M), \
        "CHANGELOG.md has no section for pyproject.toml's version"


def test_lstsd_version_prints_the_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"lstsd {lstsd.__version__}\n"


def test_a_source_tree_without_metadata_still_imports():
    """``import lstsd`` from a source tree that was never installed gives a placeholder version, not an error."""
    code = ("import importlib.metadata as m\n"
            "def missing(name): raise m.PackageNotFoundError(name)\n"
            "m.version = missing\n"
            "import lstsd; print(lstsd.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "0+unknown"


# ----------------------------------------------------------------------------- the wheel

_NOT_COPIED = ("__pycache__", "*.egg-info", ".*", "build", "dist", "runs")   # .git, .venv, caches: not sources


def _run(args: list, cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _borrowed_packages(links: Path) -> Path:
    """A folder of links to this environment's installed packages, less its lstsd (whatever the kind of
    install: a package, an editable hook, a dist-info) and its .pth files (not read in a plain folder)."""
    links.mkdir()
    site_dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    for site_dir in map(Path, site_dirs):
        if not site_dir.is_dir():
            continue
        for entry in sorted(site_dir.iterdir()):
            name = entry.name.lower()
            if (name.startswith(("lstsd", "__editable__")) or name.endswith(".pth") or name == "__pycache__"
                    or (links / entry.name).exists()):   # the first site folder wins, as on sys.path
                continue
            (links / entry.name).symlink_to(entry)
    return links


@pytest.mark.slow
def test_the_wheel_installs_and_runs_on_its_own(tmp_path):
    import shutil

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    work = tmp_path / "work"   # every command runs here: an empty folder, not the source tree
    work.mkdir()

    # The sdist, and the wheel built from the sdist (so the sdist is proven complete), from a copy of the
    # tree: the build writes build/ and an egg-info beside the sources, and others may be using this one.
    sources = tmp_path / "sources"
    shutil.copytree(ROOT, sources, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, sources], work, env)
    version = _pyproject_version()
    wheel, sdist = dist / f"lstsd-{version}-py3-none-any.whl", dist / f"lstsd-{version}.tar.gz"
    assert sorted(dist.iterdir()) == sorted([wheel, sdist])

    names = zipfile.ZipFile(wheel).namelist()
    test_only = [n for n in names if re.search(r"(^|/)(conftest\.py|test_[^/]*\.py|tests?/)", n)]
    assert test_only == [], f"test-only files in the wheel: {test_only}"
    assert all(n.startswith(("lstsd/", f"lstsd-{version}.dist-info/")) for n in names), names
    shipped = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".yaml")}
    assert shipped - set(names) == set(), "every module and preset of src/lstsd is in the wheel"
    with tarfile.open(sdist) as archive:
        in_sdist = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "src/lstsd/harness/presets/quick.yaml"} <= in_sdist

    # A fresh environment that sees the wheel's lstsd first and this environment's other packages after it.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work, env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              work, env).strip())
    (site_packages / "borrowed.pth").write_text(f"{_borrowed_packages(tmp_path / 'borrowed')}\n")
    _run([python, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('lstsd') is not None)"], work, env)
    # pip is one of the borrowed packages; --no-index: every requirement of lstsd[harness] must already be met.
    _run([python, "-m", "pip", "install", "--no-index", f"{wheel}[harness]"], work, env)

    where = _run([python, "-c", "import importlib.metadata as m, lstsd, torch; "
                  "print(lstsd.__file__); print(m.distribution('lstsd').locate_file('lstsd')); "
                  "print(lstsd.__version__); print(torch.__version__)"], work, env).splitlines()
    assert Path(where[0]).parent == site_packages / "lstsd", where
    assert Path(where[1]) == site_packages / "lstsd", where
    assert where[2] == version, where

    # The README's loop, complete (examples/plain_loop.py), with the installed library.
    shutil.copy(ROOT / "examples" / "plain_loop.py", work)
    out = _run([python, "plain_loop.py", "--epochs", "2", "--generation-epochs", "1"], work, env)
    assert re.search(r"^epoch  1  test accuracy", out, flags=re.M), out
    assert "soft targets recorded: long-term 1257, short-term 1257 of 1257 samples" in out, out

    # The command, its presets (package data) and a run.
    lstsd_command = bin_dir / "lstsd"
    assert _run([lstsd_command, "--version"], work, env) == f"lstsd {version}\n"
    listed = _run([lstsd_command, "list"], work, env)
    presets = sorted(p.stem for p in (PACKAGE / "harness" / "presets").glob("*.yaml"))
    assert f"presets: {', '.join(presets)}" in listed, listed
    run_dir = work / "digits"
    _run([lstsd_command, "train", "--config", ROOT / "configs" / "offline" / "digits_lstsd.yaml",
          "--set", "epochs=1", "device=cpu", f"run_dir={run_dir}"], work, env)
    assert (run_dir / "results.json").is_file() and (run_dir / "checkpoint.pt").is_file()
