"""The Python blocks of README.md and docs/*.md run as written: every name they use is imported
or defined in the block (a newcomer pastes a block into a file; `optimize_for_inference`, `x`
and the scale-out names were undefined)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 2
            blocks.append((f"{document.name}:{line}", match.group(1)))
    return blocks


def test_the_documents_have_python_blocks() -> None:
    assert len(_python_blocks()) >= 5


def test_every_python_block_compiles_and_defines_what_it_uses(tmp_path: Path) -> None:
    for index, (where, code) in enumerate(_python_blocks()):
        compile(code, where, "exec")
        (tmp_path / f"block_{index}.py").write_text(f"# {where}\n{code}", encoding="utf-8")
    found = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F821,F822,F823",
         "--output-format", "concise", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if found.returncode != 0:
        pytest.fail("undefined names in documentation blocks:\n" + found.stdout[-3000:])
