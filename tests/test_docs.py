"""The documentation cannot drift from the code: the generated reference pages equal what
the code renders now, every alarm of the stacks has its runbook entry (and every entry an
alarm), the README stays a front page whose links all land, and every page is in the
site's navigation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_are_what_the_code_renders() -> None:
    generator = _generator()
    for name, render in generator.PAGES.items():
        assert (DOCS / "reference" / name).read_text() == render(), (
            f"docs/reference/{name} is stale: run `make docs`"
        )


def test_the_commands_page_names_every_command_and_option() -> None:
    from stream_processor.cli import parser

    page = (DOCS / "reference" / "commands.md").read_text()
    generator = _generator()
    for name, (_, command) in generator._subcommands(parser()).items():
        assert f"## `{name}`" in page
        for action in command._actions:
            if action.dest == "help":
                continue
            for option in action.option_strings:
                assert f"`{option}`" in page, (name, option)


def test_every_alarm_has_its_runbook_entry_and_every_entry_an_alarm() -> None:
    alarms = set()
    for stack in ("template.yaml", "member.yaml"):
        resources = yaml.safe_load((ROOT / "infra" / stack).read_text())["Resources"]
        alarms |= {n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    runbook = (DOCS / "operations" / "runbook.md").read_text()
    entries = set(re.findall(r"^### (\w+)$", runbook, re.M))
    assert entries == alarms
    for entry in entries:  # each says what it means, what to look at and what answers it
        body = runbook.split(f"### {entry}\n", 1)[1].split("\n### ", 1)[0]
        assert "**Means**" in body and ("**Answer**" in body or "answer**" in body), entry


def test_the_readme_is_a_front_page_whose_links_land() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 150 <= len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme and "make playground" in readme
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    listed = set(pages(config["nav"]))
    present = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert present == listed
