"""CI's environments: made by the README's install lines, and the skip log that step 2 reruns.

``.ci/run`` (docs/testing.md) makes each environment with ``.ci/readme_install.py`` and reruns,
with the optional extras, the tests the README's environment skipped (``tests/skip_log.py``).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from tests.skip_log import SKIP_LOG_ENV


@pytest.fixture(scope="module")
def readme_install():
    """The module ``.ci/readme_install.py``."""
    spec = importlib.util.spec_from_file_location(
        "readme_install", REPO_ROOT / ".ci" / "readme_install.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README_INSTALL = """# x

## Install

```bash
git clone <this repository> napari-conch && cd napari-conch
python -m venv .venv && . .venv/bin/activate
{torch}
pip install -e ".[pyqt6,test]"   # the package
```

## Next
"""
TORCH_LINE = "pip install torch --index-url https://download.pytorch.org/whl/cpu   # first"


def test_ci_installs_the_readme_lines_torch_first(readme_install):
    lines = readme_install.install_lines((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert lines[0].startswith("pip install torch ")
    assert any(line.startswith("pip install -e ") and "pyqt6" in line for line in lines[1:])
    # the README's lines, changed only as asked, in order
    plan = readme_install.planned(lines, None, [], [])
    assert [["pip", *args] for args in plan] == [shlex.split(line) for line in lines]


def test_ci_changes_only_the_torch_source_the_extras_and_a_pin(readme_install):
    lines = readme_install.install_lines(README_INSTALL.format(torch=TORCH_LINE))
    assert lines == [
        "pip install torch --index-url https://download.pytorch.org/whl/cpu",
        "pip install -e '.[pyqt6,test]'",
    ]
    plan = readme_install.planned(lines, "torch==2.13.0", ["hub", "distributed"], ["napari==0.9.0"])
    assert plan == [
        ["install", "torch==2.13.0"],
        ["install", "-e", ".[pyqt6,test,hub,distributed]", "napari==0.9.0"],
    ]


def test_a_readme_without_torch_first_is_one_clear_error(readme_install):
    with pytest.raises(readme_install.ReadmeError, match="must start with 'pip install torch"):
        readme_install.install_lines(README_INSTALL.format(torch=""))
    with pytest.raises(readme_install.ReadmeError, match="no '## Install' section"):
        readme_install.install_lines("# x\n\n## Usage\n\n## Next\n")


def test_the_oldest_napari_is_the_declared_lower_bound(readme_install):
    pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert readme_install.lower_bound(pyproject, "napari") == "0.9.0"
    unbounded = '[project]\ndependencies = ["napari", "numpy>=1.26"]\n'
    with pytest.raises(readme_install.ReadmeError, match="'napari' declares no '>=' bound"):
        readme_install.lower_bound(unbounded, "napari")
    with pytest.raises(readme_install.ReadmeError, match="does not depend on 'vispy'"):
        readme_install.lower_bound(unbounded, "vispy")


@pytest.mark.slow
def test_the_skip_log_lists_skipped_tests_and_modules_not_xfails(tmp_path):
    (tmp_path / "test_one.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def extra():
                pytest.importorskip("no_such_module_here", reason="an optional extra")

            def test_setup_skip(extra):
                pass

            def test_call_skip():
                pytest.skip("fixture absent")

            @pytest.mark.xfail(reason="known")
            def test_expected_failure():
                assert False

            def test_passes():
                pass
            """
        )
    )
    (tmp_path / "test_module.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_x():\n    pass\n'
    )
    log = tmp_path / "skips.tsv"
    env = {**os.environ, SKIP_LOG_ENV: str(log), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PYTEST_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skip_log", "-p", "no:cacheprovider",
         "-q", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = sorted(line.split("\t") for line in log.read_text().splitlines())
    assert rows == [
        ["test_module.py", "could not import 'no_such_module_here': No module named "
         "'no_such_module_here'"],
        ["test_one.py::test_call_skip", "fixture absent"],
        ["test_one.py::test_setup_skip", "an optional extra"],
    ]  # fmt: skip
