"""Sessions for the wall workspace.

``nox`` with no arguments runs every package's tests, each in its own virtualenv that holds only
that package (and what it declares), then ruff.  ``nox -s tests`` runs everything in one venv.

Torch always comes from local disk: ``constraints/torch-cpu.txt`` (2.13.0 CPU) for packages that
need only torch, ``constraints/torch-vision.txt`` (2.14.1 + torchvision 0.29.1) where timm needs
torchvision.  No session can resolve a CUDA torch from the registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PKG = ROOT / "packages"
COMMON = ["-c", "constraints/common.txt"]
TORCH_CPU = [*COMMON, "-c", "constraints/torch-cpu.txt"]
TORCH_VISION = [*COMMON, "-c", "constraints/torch-vision.txt"]
TEST_DEPS = ["pytest", "hypothesis"]

nox.options.sessions = ["tokenizer", "flow", "data", "robots", "core", "lint"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


def _pkg(name: str) -> str:
    return str(PKG / f"wall-{name}")


def _ensure_osmesa(session: nox.Session) -> None:
    """MetaWorld camera images need Debian's libosmesa6 (EGL does not work headless here)."""
    if Path("/usr/lib/x86_64-linux-gnu/libOSMesa.so.8").exists() or shutil.which("apt-get") is None:
        return
    if os.geteuid() != 0:
        session.warn("libosmesa6 is missing and we are not root: MetaWorld image tests will be skipped")
        return
    session.log("installing libosmesa6 for MuJoCo offscreen rendering")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "libosmesa6"], check=True, env=env)


def _pytest(session: nox.Session, *paths: str) -> None:
    session.env.setdefault("MUJOCO_GL", "osmesa")
    session.env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    session.run("pytest", "-q", "-p", "no:cacheprovider", *paths, *session.posargs)


@nox.session(python="3.11")
def tokenizer(session: nox.Session) -> None:
    """wall-tokenizer alone, and proof that it pulls in no torch."""
    session.install(*COMMON, _pkg("tokenizer"), *TEST_DEPS)
    session.run(
        "python",
        "-c",
        "import importlib.util, sys, wall_tokenizer; "
        "sys.exit('torch was installed with wall-tokenizer') if importlib.util.find_spec('torch') else "
        "print('wall-tokenizer imports without torch')",
    )
    _pytest(session, _pkg("tokenizer") + "/tests")


@nox.session(python="3.11")
def flow(session: nox.Session) -> None:
    """wall-flow alone (torch only)."""
    session.install(*TORCH_CPU, _pkg("flow"), *TEST_DEPS)
    _pytest(session, _pkg("flow") + "/tests")


@nox.session(python="3.11")
def data(session: nox.Session) -> None:
    """wall-data alone."""
    session.install(*TORCH_CPU, _pkg("data"), *TEST_DEPS)
    _pytest(session, _pkg("data") + "/tests")


@nox.session(python="3.11")
def robots(session: nox.Session) -> None:
    """wall-robots with its simulator and server extras (and wall-data, whose writer it uses)."""
    _ensure_osmesa(session)
    session.install(*TORCH_CPU, _pkg("data"), _pkg("robots") + "[metaworld,aloha,server,plot]", *TEST_DEPS)
    _pytest(session, _pkg("robots") + "/tests")


def _install_all(session: nox.Session) -> None:
    _ensure_osmesa(session)
    session.install(
        *TORCH_VISION,
        _pkg("tokenizer"),
        _pkg("flow"),
        _pkg("data"),
        _pkg("robots") + "[metaworld,aloha,server,plot]",
        _pkg("core"),
        *TEST_DEPS,
    )


@nox.session(python="3.11")
def core(session: nox.Session) -> None:
    """wall-core with the four packages it builds on."""
    _install_all(session)
    _pytest(session, _pkg("core") + "/tests")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package's tests in one environment."""
    _install_all(session)
    _pytest(session, *(_pkg(n) + "/tests" for n in ("tokenizer", "flow", "data", "robots", "core")))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check + format check over the whole workspace."""
    session.install(*COMMON, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Run every benchmark script and write benchmarks/RESULTS.md."""
    _install_all(session)
    session.run("python", "benchmarks/run_all.py", *session.posargs)


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The embedded default: MetaWorld demos -> tokenizer -> train -> closed-loop eval -> report."""
    _install_all(session)
    session.env.setdefault("MUJOCO_GL", "osmesa")
    session.env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    session.run("wall", "demo", *session.posargs)
