"""Assemble README.md from the section files in docs/ (one owner per section)."""
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SECTIONS = ["top", "data", "model", "eval", "tune", "reliability", "cluster", "bench", "tail"]

if __name__ == "__main__":
    text = "\n\n".join((DOCS / f"readme_{name}.md").read_text().rstrip() + "\n" for name in SECTIONS)
    (DOCS.parent / "README.md").write_text(text)
