"""The README's curl walk-through, run verbatim against the real server on a fresh database."""

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import TEST_SECRET, report
from tests.system.conftest import REPO, Server


def walkthrough() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## A walk through with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def json_documents(text: str) -> list:
    """The JSON values printed one after another, skipping the lines of plain text."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while (
        start := min((i for i in (text.find("{", at), text.find("[", at)) if i >= 0), default=-1)
    ) >= 0:
        value, at = decoder.raw_decode(text, start)
        documents.append(value)
    return documents


def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'walkthrough.db'}"
    server = Server(url, tmp_path / "server.log", workers=1).start()
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough()],
            cwd=REPO,
            env={
                **os.environ,
                "API": server.base_url,
                "DATABASE_URL": url,
                "SECRET_KEY": TEST_SECRET,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr + result.stdout
    signed_up, finished, history = json_documents(result.stdout)[-3:]
    assert signed_up["email"] == "ada@example.com"
    assert finished["status"] == "finished"
    assert finished["total"] == "25.00"
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "pending"),
        ("pending", "finished"),
    ]
    assert server.problems() == []
    report("README walk-through: ran verbatim, order finished")
