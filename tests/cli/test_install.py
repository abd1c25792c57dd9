"""A plain install (`pip install timecrisis`, no extra) runs every command and the README's first
examples (DESIGN §1: no extras are needed for any feature). Built for real: a fresh virtualenv,
this tree installed into it by pip from the package index this machine is configured with, and
the installed `timecrisis` script run from an empty directory (so nothing of the checkout, nor
the dev extra of the test environment, can stand in for what the install lacks)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

pytestmark = pytest.mark.slow


def _run(
    args: list[str], cwd: pathlib.Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"COLUMNS": "120", "NO_COLOR": "1"})
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The bin directory of a virtualenv holding `pip install <this tree>` and nothing else."""
    venv = tmp_path_factory.mktemp("plain-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO)], cwd=venv
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin"


def test_the_help_and_every_command_help_run(
    plain_install: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    top = _run([str(plain_install / "timecrisis"), "--help"], cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    commands = re.findall(r"^  ([a-z][a-z-]+)  ", top.stdout.split("Commands:")[1], re.M)
    assert "demo" in commands and "dashboard" in commands, top.stdout
    for name in commands:
        shown = _run([str(plain_install / "timecrisis"), name, "--help"], cwd=tmp_path)
        assert shown.returncode == 0, (name, shown.stderr)


def test_the_demo_runs(plain_install: pathlib.Path, tmp_path: pathlib.Path) -> None:
    demo = _run([str(plain_install / "timecrisis"), "demo", "--duration", "2"], cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "demo finished" in demo.stdout


def test_the_readme_first_examples_run(plain_install: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # "Set up a scheduler", "Define jobs" (EmailStr) and "Enqueue jobs" (top-level await, so
    # inside a coroutine here), as a reader would paste them.
    setup, define, enqueue = PYTHON_BLOCK.findall((REPO / "README.md").read_text())[:3]
    script = (
        f"{setup}\n{define}\n"
        "async def main():\n"
        f"{textwrap.indent(enqueue, '    ')}"
        "    print('enqueued', job_id)\n"
        "    await scheduler.close()\n\n"
        "import asyncio\nasyncio.run(main())\n"
    )
    (tmp_path / "example.py").write_text(script)
    ran = _run([str(plain_install / "python"), "example.py"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("enqueued "), ran.stdout
