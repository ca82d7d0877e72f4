"""The manual lives in README.md and docs/: code cites its pages by anchor, never the specification
outside the repository, and every cited page and anchor exists."""
from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = ("autoscaler", "test", "bench")  # bench/ is not in the test image: skipped where absent
# Built, so that this file does not cite it.
FORBIDDEN = "behaviour" + ".md"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '# comment' in a code block is no heading
    return {anchor(match) for match in re.findall(r"^#+ (.+)$", text, re.M)}


def manual_and_code() -> list[pathlib.Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for directory in SOURCES:
        files += sorted((ROOT / directory).rglob("*.py"))
    return files


@pytest.mark.parametrize(
    "heading, expected",
    [
        ("Launch failures and region overflow", "launch-failures-and-region-overflow"),
        ("Metrics, health, leader election, events and logs", "metrics-health-leader-election-events-and-logs"),
        ("Bad configuration fails fast; bad weather is retried", "bad-configuration-fails-fast-bad-weather-is-retried"),
        ("Scale in", "scale-in"),
    ],
)
def test_anchor_is_githubs(heading, expected):
    assert anchor(heading) == expected


def test_nothing_cites_the_specification_outside_the_repository():
    citing = [str(path.relative_to(ROOT)) for path in manual_and_code() if FORBIDDEN in path.read_text()]
    assert not citing, f"cite the docs page instead of {FORBIDDEN}: {citing}"


def test_every_cited_docs_anchor_exists():
    cited = {(path.relative_to(ROOT), page, name) for path in manual_and_code()
             for page, name in re.findall(r"docs/([\w-]+\.md)#([\w-]+)", path.read_text())}
    assert cited, "nothing cites a docs page: the pattern is wrong"
    missing = [f"{source}: docs/{page}#{name}" for source, page, name in sorted(cited)
               if not (DOCS / page).is_file() or name not in anchors(DOCS / page)]
    assert not missing, f"cited anchors no page defines: {missing}"


def test_every_link_between_the_pages_resolves():
    """Markdown links from README.md and docs/*.md to a page and anchor, or to an anchor on the same page."""
    broken = []
    for page in (ROOT / "README.md", *sorted(DOCS.glob("*.md"))):
        for target, name in re.findall(r"\]\(([\w./-]*?\.md)?#([\w-]+)\)", page.read_text()):
            linked = (page.parent / target).resolve() if target else page
            if not linked.is_file() or name not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{name}")
    assert not broken, broken


def test_the_readme_starts_with_the_commands_ci_runs():
    """CI runs exactly the test command the README gives; the README's first block holds it."""
    first_block = ROOT.joinpath("README.md").read_text().split("```")[1]
    assert "python main.py --sandbox" in first_block and "python -m pytest test/ -q" in first_block
