"""Install napari-conch into a virtual environment with the README's own install lines.

CI makes each of its environments with this script, so that CI tests the environment a user
gets by following the README (docs/testing.md). It reads the ``pip install`` lines of the
README's "Install" section (the first ``bash`` block after the ``## Install`` heading) and runs
them, in order, with the environment's own pip. Three changes can be asked for, each printed:

``--torch SPEC``
    The README's torch line installs ``SPEC`` instead (CI cannot reach the PyTorch index the
    README names; ``torch==2.13.0`` is the CPU build that pip finds on CI's machine).
``--extras NAME,...``
    More extras on the line that installs the package (``-e ".[pyqt6,test]"``).
``--oldest DIST``
    ``DIST==X`` on that line, ``X`` the lower bound ``pyproject.toml`` declares for ``DIST``;
    after the install, the version installed must be ``X``.

Then it prints the versions of the packages that matter. Standard library only (it runs before
the environment has anything); ``--oldest`` needs Python 3.11 or newer (``tomllib``). Exit 2
with one line when the README or ``pyproject.toml`` do not say what this script needs.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: --oldest needs 3.11
    tomllib = None

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Packages whose installed versions are printed after the install.
REPORTED = (
    "napari", "vispy", "app-model", "magicgui", "superqt", "PyQt6", "torch", "numpy", "dask",
    "distributed", "zarr", "huggingface_hub", "pytest",
)  # fmt: skip

#: pip's notes on this machine's configured local indexes, one per package: not news.
PIP_NOISE = "is ignored: it is neither a file nor a directory"


class ReadmeError(Exception):
    """The README or pyproject.toml does not say what CI needs; the message says what."""


def install_lines(readme: str) -> list[str]:
    """The ``pip install`` lines of the README's Install section, comments stripped.

    The first must install torch (torch first, so that the package does not pull in a CUDA
    build), and one must install the package itself (``-e``).
    """
    section = re.search(r"^## Install\s*$(.*?)(?=^## )", readme, flags=re.M | re.S)
    if section is None:
        raise ReadmeError("README.md has no '## Install' section")
    block = re.search(r"^```bash\s*$(.*?)^```", section.group(1), flags=re.M | re.S)
    if block is None:
        raise ReadmeError("README.md's Install section has no ```bash block")
    lines = []
    for raw in block.group(1).splitlines():
        words = shlex.split(raw, comments=True)
        if words[:2] == ["pip", "install"]:
            lines.append(shlex.join(words))
    if not lines or shlex.split(lines[0])[2:3] != ["torch"]:
        raise ReadmeError("README.md's install block must start with 'pip install torch ...'")
    if sum("-e" in shlex.split(line) for line in lines) != 1:
        raise ReadmeError("README.md's install block must have one 'pip install -e ...' line")
    return lines


def lower_bound(pyproject: str, dist: str) -> str:
    """The ``>=`` bound ``pyproject.toml`` declares for the dependency ``dist``."""
    if tomllib is None:
        raise ReadmeError("reading pyproject.toml needs Python 3.11 or newer (tomllib)")
    for requirement in tomllib.loads(pyproject)["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if name and name.group(0).lower() == dist.lower():
            bound = re.search(r">=\s*([^,;\s]+)", requirement)
            if bound is None:
                raise ReadmeError(f"pyproject.toml: {requirement!r} declares no '>=' bound")
            return bound.group(1)
    raise ReadmeError(f"pyproject.toml does not depend on {dist!r}")


def planned(
    lines: list[str], torch: str | None, extras: list[str], also: list[str]
) -> list[list[str]]:
    """The pip arguments (after ``pip``) of each line, with the asked-for changes made."""
    commands = []
    for line in lines:
        args = shlex.split(line)[1:]
        if args[1] == "torch" and torch:
            args = ["install", torch]
        if "-e" in args:
            target = args.index("-e") + 1
            if extras:
                spec = re.fullmatch(r"(.*?)(?:\[(.*)\])?", args[target])
                have = [e for e in (spec.group(2) or "").split(",") if e]
                args[target] = f"{spec.group(1)}[{','.join(have + extras)}]"
            args += also
        commands.append(args)
    return commands


def pip(python: str, args: list[str]) -> None:
    """Run ``python -m pip ARGS`` quietly; its messages pass, but the local-index notes."""
    done = subprocess.run(
        [python, "-m", "pip", *args[:1], "-q", *args[1:]], stderr=subprocess.PIPE, text=True
    )
    for line in done.stderr.splitlines():
        if PIP_NOISE not in line:
            print(line, file=sys.stderr)
    if done.returncode:
        sys.exit(f"CI: pip {shlex.join(args)} failed (exit {done.returncode})")


def installed(python: str) -> dict[str, str | None]:
    """The versions of :data:`REPORTED` in the environment of ``python`` (None: not there)."""
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        out[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError:\n        out[name] = None\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", code, *REPORTED], capture_output=True, text=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the environment's python")
    parser.add_argument("--torch", help="install this torch instead of the README's torch line")
    parser.add_argument("--extras", default="", help="more extras for the package, comma-separated")
    parser.add_argument("--oldest", action="append", default=[], help="pin DIST to its lower bound")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    try:
        lines = install_lines((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
        pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
        oldest = {dist: lower_bound(pyproject, dist) for dist in args.oldest}
    except ReadmeError as error:
        print(f"CI: {error}", file=sys.stderr)
        return 2
    extras = [e for e in args.extras.split(",") if e]
    also = [f"{dist}=={version}" for dist, version in oldest.items()]
    for line, command in zip(lines, planned(lines, args.torch, extras, also), strict=True):
        print(f"README: {line}")
        if shlex.split(line)[1:] != command:
            print(f"    CI: pip {shlex.join(command)}")
        if not args.dry_run:
            pip(args.python, command)
    if args.dry_run:
        return 0
    versions = installed(args.python)
    print("installed: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    for dist, version in oldest.items():
        if versions.get(dist) != version:
            print(f"CI: {dist} {versions.get(dist)} installed, not the oldest declared {version}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
