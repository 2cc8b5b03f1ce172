"""Sessions for the wall workspace.

``nox`` with no arguments runs the default sessions: every package's tests (not slow), the first four each
in a virtualenv that holds only that package (and what it declares), then ruff, mypy, every README's
python blocks and the reliability catalogue (``benchmarks/reliability.py``, about a minute).
``nox -s wheels slow openpi`` adds the wheel check (each package built and installed alone from one wheel
folder, in a fresh venv), the tests marked ``@pytest.mark.slow`` (the ``--quick`` embedded default end to end,
MetaWorld demo generation) and openpi-client 0.1.2, in its own venv, driving ``wall serve``; ``.ci/run`` runs
both commands. ``nox -s tests`` runs every test in one venv.

Torch always comes from local disk: ``constraints/torch-cpu.txt`` (2.13.0 CPU) for packages that
need only torch, ``constraints/torch-vision.txt`` (2.14.1 + torchvision 0.29.1) where timm needs
torchvision.  No session can resolve a CUDA torch from the registry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox
from nox.command import CommandFailed

ROOT = Path(__file__).parent
PKG = ROOT / "packages"
NAMES = ("tokenizer", "flow", "data", "robots", "core")
COMMON = ["-c", "constraints/common.txt"]
TORCH_CPU = [*COMMON, "-c", "constraints/torch-cpu.txt"]
TORCH_VISION = [*COMMON, "-c", "constraints/torch-vision.txt"]
TEST_DEPS = ["pytest", "hypothesis"]
NOT_SLOW = ["-m", "not slow"]
OPENPI_CONSTRAINTS = ROOT / "constraints" / "openpi-client.txt"  # the openpi session's client venv only

# Every session tests what it installed: an inherited PYTHONPATH (a dev shell pointing at packages/*/src) would
# put all five packages on every venv's path and make the install-alone checks meaningless.
if os.environ.pop("PYTHONPATH", None):
    sys.stderr.write(
        "noxfile: PYTHONPATH is set in this shell; ignored so each session sees only its installs\n"
    )

nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


def _pkg(name: str) -> str:
    return str(PKG / f"wall-{name}")


def _tests(*names: str) -> list[str]:
    return [_pkg(n) + "/tests" for n in names]


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


def _sim_env(session: nox.Session) -> None:
    session.env.setdefault("MUJOCO_GL", "osmesa")
    session.env.setdefault("PYOPENGL_PLATFORM", "osmesa")


def _pytest(session: nox.Session, *args: str) -> None:
    """pytest over ``args``; exit code 5 (nothing collected) counts as a failure, never as a pass."""
    _sim_env(session)
    session.run("pytest", "-q", "-p", "no:cacheprovider", *args, *session.posargs)


FULL = ROOT / ".nox" / "full"
FULL_REQS = [
    *TORCH_VISION,
    *(_pkg(n) for n in NAMES[:-1]),
    _pkg("core") + "[all,test]",
    *TEST_DEPS,
    "mypy",
    "hatchling",
]


def _new_venv(session: nox.Session, path: Path) -> Path:
    """A fresh virtualenv at ``path`` (virtualenv seeds a current pip); returns its ``bin`` folder."""
    shutil.rmtree(path, ignore_errors=True)
    session.run(sys.executable, "-m", "virtualenv", "-q", "-p", sys.executable, str(path), external=True)
    return path / "bin"


def _full_env(session: nox.Session) -> Path:
    """The one environment with all five packages, every extra and the test tools (``.nox/full``).

    Shared by ``core``, ``slow``, ``tests``, ``types``, ``readme``, ``demo`` and ``bench`` so the
    multi-GB torch + torchvision install happens once. Dependencies are reinstalled only when a
    pyproject or constraints file changes (a stamp of their contents); the five packages themselves are
    reinstalled from the work tree on every use. Returns the ``bin`` folder, also put first on PATH.
    """
    _ensure_osmesa(session)
    constraints = [f for f in ROOT.glob("constraints/*.txt") if f.name != OPENPI_CONSTRAINTS.name]
    files = sorted([*constraints, *PKG.glob("*/pyproject.toml")])
    stamp = hashlib.sha256(b"".join(f.read_bytes() for f in files) + " ".join(FULL_REQS).encode()).hexdigest()
    bin_dir, stamp_file = FULL / "bin", FULL / "deps.sha256"
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        _new_venv(session, FULL)
        session.run(str(bin_dir / "pip"), "install", "-q", *FULL_REQS, external=True)
        stamp_file.write_text(stamp)
    session.run(
        str(bin_dir / "pip"),
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--force-reinstall",
        *map(_pkg, NAMES),
        external=True,
    )
    session.env["VIRTUAL_ENV"] = str(FULL)
    session.env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    _sim_env(session)
    return bin_dir


def _full_pytest(session: nox.Session, *args: str) -> None:
    bin_dir = _full_env(session)
    session.run(
        str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider", *args, *session.posargs, external=True
    )


@nox.session(python="3.11")
def tokenizer(session: nox.Session) -> None:
    """wall-tokenizer alone, and proof that it pulls in no torch."""
    session.install(*COMMON, _pkg("tokenizer"), *TEST_DEPS)
    session.run("python", ".ci/import_all.py", "wall_tokenizer", "--absent", "torch")
    _pytest(session, *NOT_SLOW, *_tests("tokenizer"))


@nox.session(python="3.11")
def flow(session: nox.Session) -> None:
    """wall-flow alone (torch only)."""
    session.install(*TORCH_CPU, _pkg("flow"), *TEST_DEPS)
    _pytest(session, *NOT_SLOW, *_tests("flow"))


@nox.session(python="3.11")
def data(session: nox.Session) -> None:
    """wall-data alone."""
    session.install(*TORCH_CPU, _pkg("data"), *TEST_DEPS)
    _pytest(session, *NOT_SLOW, *_tests("data"))


@nox.session(python="3.11")
def robots(session: nox.Session) -> None:
    """wall-robots with its simulator and server extras (and wall-data, whose writer it uses)."""
    _ensure_osmesa(session)
    session.install(*TORCH_CPU, _pkg("data"), _pkg("robots") + "[metaworld,aloha,server,plot]", *TEST_DEPS)
    _pytest(session, *NOT_SLOW, *_tests("robots"))


@nox.session(venv_backend="none")
def core(session: nox.Session) -> None:
    """wall-core's tests (not slow) with the four packages it builds on and all its extras."""
    # the MuJoCo-before-triton import-order test lives in wall-core's tests (test_import_order.py)
    _full_pytest(session, *NOT_SLOW, *_tests("core"))


@nox.session(venv_backend="none", default=False)
def slow(session: nox.Session) -> None:
    """Only the tests marked ``@pytest.mark.slow``, every package (the shared full environment)."""
    _full_pytest(session, "-m", "slow", *_tests(*NAMES))


@nox.session(venv_backend="none", default=False)
def tests(session: nox.Session) -> None:
    """Every package's tests, slow ones included, in the shared full environment."""
    _full_pytest(session, *_tests(*NAMES))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check + format check over the whole workspace."""
    session.install(*COMMON, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
def types(session: nox.Session) -> None:
    """mypy over each package's sources with that package's ``[tool.mypy]`` settings.

    Siblings resolve from source through MYPYPATH; third-party libraries come from the installed packages.
    """
    bin_dir = _full_env(session)
    session.env["MYPYPATH"] = os.pathsep.join(_pkg(n) + "/src" for n in NAMES)
    cache = FULL / "mypy-cache"
    failed = []
    for name in NAMES:
        try:
            session.run(
                str(bin_dir / "mypy"),
                "--config-file",
                _pkg(name) + "/pyproject.toml",
                "--cache-dir",
                str(cache),
                _pkg(name) + "/src",
                external=True,
            )
        except CommandFailed:
            failed.append(f"wall-{name}")
    if failed:
        session.error(f"mypy found errors in {', '.join(failed)}")


@nox.session(venv_backend="none")
def readme(session: nox.Session) -> None:
    """Every ```python block of the root README and the five package READMEs, each README in a temp dir."""
    bin_dir = _full_env(session)
    readmes = ["README.md", *(f"packages/wall-{n}/README.md" for n in NAMES)]
    session.run(str(bin_dir / "python"), ".ci/readme_blocks.py", *readmes, external=True)


@nox.session(venv_backend="none")
def reliability(session: nox.Session) -> None:
    """Replay the reliability catalogue (>= 150 bad datasets, checkpoints, policy folders, server requests and
    robot commands) and print its table; fails unless crashes, silent wrong results and data lost are all 0."""
    bin_dir = _full_env(session)
    session.run(str(bin_dir / "python"), "benchmarks/reliability.py", *session.posargs, external=True)


# What each package's alone-check may not import without extras, and what must be absent.
_ALONE: dict[str, tuple[list[str], list[str], list[str]]] = {
    # name: (constraints, modules that need an extra, distributions that must not be installed)
    "tokenizer": (COMMON, [], ["torch"]),
    "flow": (TORCH_CPU, [], ["transformers", "wall_data"]),
    "data": (TORCH_CPU, [], ["transformers", "wall_flow"]),
    "robots": (
        TORCH_CPU,
        ["wall_robots.sim_metaworld", "wall_robots.aloha_expert", "wall_robots.serving"],
        ["metaworld", "mujoco", "gym_aloha", "dm_control", "websockets", "matplotlib", "transformers"],
    ),
    "core": (
        TORCH_VISION,
        ["wall_robots.sim_metaworld", "wall_robots.aloha_expert", "wall_robots.serving"],
        ["metaworld", "mujoco", "gymnasium", "gym_aloha", "websockets", "matplotlib"],
    ),
}


@nox.session(python="3.11", default=False)
def wheels(session: nox.Session) -> None:
    """Build the five wheels into one folder, then install EACH package alone from it in a fresh venv.

    Each venv gets ``pip install --find-links WHEELS wall-<name>`` (siblings come from the folder, nothing
    else of ours), then every module of the package is imported and the distributions it must not pull
    in are proved absent (torch for wall-tokenizer; the simulator, server and plot stacks for wall-core
    without extras). wall-core's ``[all]`` extra is then added and the ``wall`` CLI started.
    """
    session.install(*COMMON, "hatchling")
    tmp = Path(session.create_tmp())
    wheel_dir = tmp / "wheelhouse"
    shutil.rmtree(wheel_dir, ignore_errors=True)
    session.run(
        "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), *map(_pkg, NAMES)
    )
    built = sorted(p.name for p in wheel_dir.glob("*.whl"))
    session.log(f"built {built}")
    if len(built) != len(NAMES):
        session.error(f"expected {len(NAMES)} wheels, found {built}")
    only = [n for n in NAMES if not session.posargs or n in session.posargs]
    for name in only:
        constraints, skip, absent = _ALONE[name]
        venv = tmp / f"alone-{name}"
        py = str(_new_venv(session, venv) / "python")
        pip = [py, "-m", "pip", "install", "-q", *constraints, "--find-links", str(wheel_dir)]
        session.run(*pip, f"wall-{name}", external=True)
        check = [py, ".ci/import_all.py", f"wall_{name}"]
        session.run(*check, *(["--skip", *skip] if skip else []), "--absent", *absent, external=True)
        if name == "core":
            session.run(*pip, "wall-core[all]", external=True)
            session.run(*check, external=True)
            session.run(str(venv / "bin" / "wall"), "--help", external=True, silent=True)
        shutil.rmtree(venv)


@nox.session(python="3.11", default=False)
def openpi(session: nox.Session) -> None:
    """openpi-client 0.1.2 from the registry drives a ``wall serve`` process (test_serve_openpi_client.py).

    This session's own venv is the client: openpi-client and its dependencies pinned by
    ``constraints/openpi-client.txt`` (numpy < 2), proved free of torch and of our packages. The server runs
    from the shared full environment; pytest gets the client's python through ``WALL_OPENPI_PYTHON``.
    """
    session.install("-c", str(OPENPI_CONSTRAINTS), "openpi-client==0.1.2", "typing-extensions")
    tests = ["openpi_client.msgpack_numpy_test", "openpi_client.image_tools_test"]  # they need pytest
    session.run("python", ".ci/import_all.py", "openpi_client", "--skip", *tests, "--absent", "torch",
                "wall_core", "wall_robots")  # fmt: skip
    client_python = str(Path(session.bin) / "python")
    bin_dir = _full_env(session)
    session.env["WALL_OPENPI_PYTHON"] = client_python
    test = _pkg("core") + "/tests/test_serve_openpi_client.py"
    session.run(str(bin_dir / "pytest"), "-q", "-s", "-p", "no:cacheprovider", test, *session.posargs,
                external=True)  # fmt: skip


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Run every benchmark script and write benchmarks/RESULTS.md."""
    bin_dir = _full_env(session)
    session.run(str(bin_dir / "python"), "benchmarks/run_all.py", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def demo(session: nox.Session) -> None:
    """The embedded default: MetaWorld demos -> tokenizer -> train -> closed-loop eval -> report."""
    bin_dir = _full_env(session)
    session.run(str(bin_dir / "wall"), "demo", *session.posargs, external=True)
