"""A peer library's own virtual environment that shares this one's torch (for ``bench_peers.py``).

NNI is a benchmark dependency only: gmgraph and its tests never import it. It is installed on demand,
from the package registry, into ``.venv-nni`` next to ``.venv``. That environment sees ``.venv``'s
packages (torch, numpy, gmgraph's dependencies) through a ``.pth`` file, as ``make test-gpu-torch``
does, so only NNI and what it adds come from the registry; a package NNI pins below the shared
version (``filelock<3.12``) goes into ``.venv-nni`` and shadows the shared one there only.
Two pins: ``pytorch-lightning<2.2``, because ``nni.nas.strategy`` imports Lightning and NNI 3.0
predates Lightning 2.2 (2.1.4 imports cleanly); ``setuptools<81``, because that Lightning imports
``pkg_resources``, which newer setuptools no longer ship (without the pin the import fails).

    >>> sorted(PEERS)
    ['nni']
    >>> PEERS["nni"].packages
    ('nni==3.0', 'pytorch-lightning<2.2', 'setuptools<81')
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from gmgraph.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Peer:
    """A peer: its name, what pip installs, the modules the benchmark imports, its environment's default folder."""

    module: str
    packages: tuple[str, ...]
    imports: tuple[str, ...]
    folder: Path


PEERS = {"nni": Peer("nni", ("nni==3.0", "pytorch-lightning<2.2", "setuptools<81"),
                     ("nni.nas.hub.pytorch", "nni.nas.strategy"), REPO / ".venv-nni")}


def python_of(venv: Path) -> Path:
    """The interpreter of a virtual environment (``venv/bin/python``)."""
    return venv / "bin" / "python"


def installed(peer: Peer, venv: Path) -> bool:
    """Whether ``venv`` exists and imports what the benchmark needs (in a subprocess: this interpreter is left alone)."""
    python = python_of(venv)
    if not python.exists():
        return False
    check = subprocess.run([str(python), "-c", "; ".join(f"import {m}" for m in peer.imports)],
                           capture_output=True, env=_env())
    return check.returncode == 0


def missing_message(name: str, venv: Path) -> str:
    """The one line said when the peer's environment is absent and installing is not allowed.

    >>> missing_message("nni", Path("/x/.venv-nni"))
    'nni is not installed in /x/.venv-nni: run without --no-install to install nni==3.0, pytorch-lightning<2.2, setuptools<81 there from the package registry, or pass --peer none'
    """
    packages = ", ".join(PEERS[name].packages)
    return (f"{name} is not installed in {venv}: run without --no-install to install {packages} there from the "
            "package registry, or pass --peer none")


def install(peer: Peer, venv: Path) -> None:
    """Create ``venv`` sharing this environment's packages and pip-install the peer into it."""
    python = python_of(venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Named to sort last: the peer's own packages come first on its sys.path, ours after them.
    (Path(purelib) / "zz_gmgraph_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    print(f"installing {', '.join(peer.packages)} into {venv} (once; log: {venv / 'install.log'})", flush=True)
    with open(venv / "install.log", "w") as log:
        done = subprocess.run([str(python), "-m", "pip", "install", *peer.packages], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not installed(peer, venv):
        raise ConfigError(f"installing {peer.module} into {venv} failed; see {venv / 'install.log'}")


def reexec_in(venv: Path, argv: list[str]) -> None:
    """Replace this process with the same script run by ``venv``'s interpreter (which sees gmgraph too)."""
    python = python_of(venv)
    os.execve(str(python), [str(python), *argv], _env())


def _env() -> dict[str, str]:
    # The editable gmgraph is found through a .pth hook that a shared folder's .pth does not run: add the repo.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env
