"""The two commands: `make run` installs what the app needs and no more; `make test` adds the
test tools. (`make -n -B` prints what a fresh clone would run, without running it.)"""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def planned(target: str) -> str:
    return subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_make_run_installs_only_the_runtime_requirements() -> None:
    plan = planned("run")
    assert "pip install --quiet -r requirements.txt -c constraints.txt" in plan
    assert "requirements-dev.txt" not in plan
    assert "uvicorn main:app --reload" in plan
    assert "--log-config log_config.json" in plan


def test_make_test_installs_the_test_tools_and_lints_first() -> None:
    plan = planned("test").splitlines()
    installs = [i for i, line in enumerate(plan) if "requirements-dev.txt" in line]
    lint = next(i for i, line in enumerate(plan) if "ruff check" in line)
    tests = next(i for i, line in enumerate(plan) if line.endswith("pytest"))
    assert installs
    assert installs[0] < lint < tests
