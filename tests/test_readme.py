"""The Portuguese README stays in step with the English one: same sections, same commands."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shape(path: Path) -> dict[str, object]:
    text = path.read_text()
    blocks = re.findall(r"```.*?```", text, re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return {
        "headings": len(re.findall(r"^#{1,3} ", prose, re.M)),
        "code blocks": len(blocks),
        "table rows": len(re.findall(r"^\|", prose, re.M)),
        # the commands themselves, without their (translated) comments
        "commands": [
            line.split("#")[0].rstrip()
            for block in blocks
            for line in block.splitlines()
            if line.startswith((".venv", "make ", "curl "))
        ],
    }


def test_readme_translations_match_the_english_structure() -> None:
    english = shape(REPO / "README.md")
    assert english["headings"] > 10
    assert shape(REPO / "README.pt-BR.md") == english
    assert "README.pt-BR.md" in (REPO / "README.md").read_text().splitlines()[0]
