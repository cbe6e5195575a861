"""The project's own documentation: the command reference generated from the app, the
README and the docs/ pages, and their links (all inside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anystore_cli.cli import docgen
from anystore_cli.cli.app import COMMANDS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GUIDES = ("sync.md", "serve.md", "locks.md", "library-stores.md", "safety.md")
"""Guides written apart from the reference (they may land after it): linked by these names."""

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _command_tree():
    group, ctx, commands = docgen._command_tree()
    return group, ctx, {name: (command, sub) for name, command, sub in commands}


def _option_terms(command, ctx) -> set[str]:
    return {term for term, _text in docgen._help_records(command, ctx, arguments=False)}


def _page_terms(page: str, section: str) -> set[str]:
    match = re.search(rf"^## {section}\n\n(.*?)(?:\n\n|\Z)", page, re.S | re.M)
    assert match, f"no `## {section}` list"
    return set(re.findall(r"^- `([^`]+)`", match.group(1), re.M))


def test_every_command_has_a_page_and_the_index_links_it():
    index = (DOCS / "commands" / "index.md").read_text()
    for name in COMMANDS:
        assert (DOCS / "commands" / f"{name}.md").is_file(), name
        assert f"]({name}.md)" in index, name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_page_lists_exactly_the_options_of_the_command(name):
    _group, _ctx, commands = _command_tree()
    command, ctx = commands[name]
    page = (DOCS / "commands" / f"{name}.md").read_text()
    assert _page_terms(page, "Options") == _option_terms(command, ctx), (
        f"docs/commands/{name}.md disagrees with `anystore {name} --help`: run `{docgen.GENERATED_BY}`"
    )
    for param in command.params:
        if param.param_type_name == "option" and param.help:
            assert docgen.md_escape(" ".join(param.help.split())) in page, (name, param.name)


def test_global_options_page_lists_exactly_the_global_options():
    group, ctx, _commands = _command_tree()
    page = (DOCS / "commands" / "index.md").read_text()
    assert _page_terms(page, "Global options") == _option_terms(group, ctx)


def test_committed_command_pages_are_what_the_app_generates():
    generated = docgen.docs_pages()
    differ = [path for path, text in generated.items() if (REPO / path).read_text() != text]
    assert not differ, f"out of date (run `{docgen.GENERATED_BY}`): {differ}"
    assert {str(p.relative_to(REPO)) for p in (DOCS / "commands").iterdir()} == set(generated)


def test_a_changed_option_makes_its_page_stale(tmp_path):
    docgen.write(tmp_path)
    page = tmp_path / "docs" / "commands" / "get.md"
    page.write_text(page.read_text().replace("--missing-ok", "--missing-okay"))
    assert docgen.stale(tmp_path) == ["docs/commands/get.md"]


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_links_stay_inside_the_repository_and_resolve(path: Path):
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the page itself
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(REPO), f"{path.name} links outside the repository: {target}"
        if resolved.parent == DOCS and resolved.name in GUIDES and not resolved.exists():
            continue  # a guide written on another branch
        assert resolved.exists(), f"{path.name}: broken link {target}"


def test_index_links_every_docs_page_and_guide():
    index = (DOCS / "index.md").read_text()
    linked = {(DOCS / target.split("#", 1)[0]).resolve() for target in LINK.findall(index)}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "index.md" or p.parent != DOCS}
    pages -= {p.resolve() for p in (DOCS / "commands").glob("*.md") if p.name != "index.md"}
    assert pages <= linked, sorted(str(p.relative_to(REPO)) for p in pages - linked)
    assert {(DOCS / guide).resolve() for guide in GUIDES} <= linked
    readme = (REPO / "README.md").read_text()
    for guide in GUIDES:
        assert f"](docs/{guide})" in readme, guide


def _section_code(text: str, title: str) -> str:
    section = text.split(f"\n## {title}\n", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)


def test_readme_keeps_the_install_and_test_command_lines():
    readme = (REPO / "README.md").read_text()
    assert _section_code(readme, "Install and run") == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[all]' && "
        "echo hello | anystore put greeting && anystore get greeting"
    )
    assert _section_code(readme, "Run the tests") == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[all,test]' && python -m pytest"
    )
