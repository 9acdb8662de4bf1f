"""The documentation holds together.

* every relative link in README.md and docs/*.md points at a file that exists and, for
  ``#anchor`` links into Markdown, at a heading with that GitHub-style slug;
* every ``ser-cl ...`` command shown in a code block of the README (and of docs/*.md) parses: it
  is run through typer's CliRunner with ``--help`` appended (exit code 0), and each ``--option``
  it uses appears in that command's ``--help`` output;
* the README stays short (<= 250 lines) and keeps the two set-up commands, the test one exactly
  as CI (``.ci/run``) runs it.

No command is executed for real: ``--help`` stops before anything runs, so this is fast.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest
from typer.testing import CliRunner

from ser_cl.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250
QUICKSTART = ("python3 -m venv .venv && .venv/bin/pip install -c constraints-cpu.txt -e . "
              "&& .venv/bin/ser-cl quickstart")

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_OPERATORS = {"&&", "||", ";", "|", "&"}


# ----------------------------------------------------------------------------- Markdown


def split_markdown(text: str) -> Tuple[List[str], List[List[str]]]:
    """(the lines outside fenced code blocks, the fenced code blocks as lists of lines)."""
    prose: List[str] = []
    blocks: List[List[str]] = []
    fence = None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                blocks.append([])
            else:
                prose.append(line)
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):]:
            fence = None
        else:
            blocks[-1].append(line)
    return prose, blocks


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    """Every heading anchor of a Markdown page (duplicates numbered -1, -2, ... as on GitHub)."""
    seen: Counter = Counter()
    out = set()
    for line in split_markdown(page.read_text(encoding="utf-8"))[0]:
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def relative_links(page: Path) -> Iterator[str]:
    """The link targets of a page's prose (code blocks and inline code left out), not URLs."""
    for line in split_markdown(page.read_text(encoding="utf-8"))[0]:
        if line.startswith("    ") and not line.lstrip().startswith(("-", "*", "|")):
            continue  # an indented code block
        bare = _INLINE_CODE.sub("", line)
        targets = _LINK.findall(bare)
        m = _REF_DEF.match(bare)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if target and not _SCHEME.match(target):
                yield target


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    cache: Dict[Path, Set[str]] = {}
    bad = []
    links = list(relative_links(page))
    for target in links:
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{target}: no such file {dest}")
            continue
        if anchor and dest.suffix == ".md":
            if dest not in cache:
                cache[dest] = anchors(dest)
            if anchor not in cache[dest]:
                bad.append(f"{target}: no heading with the anchor #{anchor} in {_rel(dest)}")
    assert not bad, f"{_rel(page)}: broken links:\n  " + "\n  ".join(bad)
    if page == README:
        assert any(t.startswith("docs/") for t in links), "the README links into docs/"


def test_github_slug():
    assert github_slug("The classical baseline: `experiments/opensmile_svm.toml`") == \
        "the-classical-baseline-experimentsopensmile_svmtoml"
    assert github_slug("`ser-cl prepare CORPUS_DIR --out DATA_DIR`") == "ser-cl-prepare-corpus_dir---out-data_dir"
    assert github_slug("CPU preset (EmoDB, log-mel)") == "cpu-preset-emodb-log-mel"
    assert github_slug("Run directory (`ser-cl train | pretrain`)") == "run-directory-ser-cl-train--pretrain"


# ----------------------------------------------------------------------------- commands


def _logical_lines(block: List[str]) -> Iterator[str]:
    """A code block's lines with backslash continuations joined."""
    pending = ""
    for line in block:
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending:
        yield pending


def _tokens(line: str) -> List[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def ser_cl_commands(page: Path) -> List[Tuple[str, List[str]]]:
    """``(shown text, argv after ser-cl)`` of every ser-cl command in the page's code blocks.

    A command is ``ser-cl`` (or a path ending in ``/ser-cl``, or ``-m ser_cl.cli``) at the start
    of a shell command (after ``$ `` prompts and ``VAR=value`` assignments), in a line of its own
    or joined by ``&&``, ``;`` or ``|``.
    """
    found = []
    for block in split_markdown(page.read_text(encoding="utf-8"))[1]:
        for line in _logical_lines(block):
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if "ser-cl" not in text and "ser_cl.cli" not in text:
                continue
            try:
                tokens = _tokens(text)
            except ValueError:  # an unbalanced quote: not a shell line (e.g. program output)
                continue
            segment: List[str] = []
            for tok in tokens + [";"]:
                if tok not in _OPERATORS:
                    segment.append(tok)
                    continue
                args = _ser_cl_args(segment)
                if args is not None:
                    found.append((text, args))
                segment = []
    return found


def _ser_cl_args(segment: List[str]):
    i = 0
    while i < len(segment) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", segment[i]):
        i += 1  # VAR=value before the program
    if i >= len(segment):
        return None
    prog = segment[i]
    if prog == "ser-cl" or prog.endswith("/ser-cl"):
        return segment[i + 1:]
    if "-m" in segment and segment.index("-m") + 1 < len(segment) and segment[segment.index("-m") + 1] == "ser_cl.cli":
        return segment[segment.index("-m") + 2:]
    return None


def _command_cases():
    cases = []
    for page in PAGES:
        for text, args in ser_cl_commands(page):
            cases.append(pytest.param(page, text, args, id=f"{_rel(page)}: {text[:70]}"))
    return cases


README_COMMANDS = ser_cl_commands(README)
_HELP: Dict[str, str] = {}


def _help(args: List[str]) -> Tuple[int, str]:
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"},
                           terminal_width=240)
    return result.exit_code, result.output


def _command_help(sub: str) -> str:
    if sub not in _HELP:
        code, out = _help([sub])
        assert code == 0, f"ser-cl {sub} --help failed:\n{out}"
        _HELP[sub] = out
    return _HELP[sub]


def test_the_readme_shows_ser_cl_commands():
    subs = {args[0] for _, args in README_COMMANDS if args}
    assert {"quickstart", "prepare", "run", "report", "predict"} <= subs, subs


@pytest.mark.parametrize("page, text, args", _command_cases())
def test_shown_commands_parse(page, text, args):
    assert args and not args[0].startswith("-"), f"{text}: no sub-command"
    sub = args[0]
    code, out = _help(args)
    assert code == 0 and "Usage" in out, f"`{text}` does not parse (ser-cl ... --help, exit {code}):\n{out}"
    help_text = _command_help(sub)
    for tok in args[1:]:
        if not tok.startswith("--") or tok == "--":
            continue
        option = tok.split("=", 1)[0]
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), \
            f"`{text}`: ser-cl {sub} has no option {option}"


# ----------------------------------------------------------------------------- the README


def _ci_test_command() -> str:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    cmds = [ln for ln in lines if ln.startswith("python3 -m venv") and "pytest" in ln]
    assert len(cmds) == 1, f".ci/run: expected one install-and-test line, found {cmds}"
    return cmds[0]


def _setup_section() -> List[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Set-up")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [ln.strip() for ln in lines[start:end]]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}; move details to docs/)"


def test_readme_setup_commands_are_exact():
    setup = _setup_section()
    assert _ci_test_command() in setup, "the README's Set-up lost the test command CI runs (.ci/run)"
    assert QUICKSTART in setup, "the README's Set-up lost the quickstart command"


# ----------------------------------------------------------------------------- section references

# `README, "Section"` / `docs/x.md, 'Section'` in comments, docstrings and prose (a comment's
# line breaks and `#` markers between the name and the quote are allowed), and `x.md#anchor`
# outside Markdown links (help texts, comments)
_SECTION_REF = re.compile(r"\b(README|docs/[\w-]+\.md)(?:'s)?,?\s+(?:section\s+)?[\"']([^\"'\n]{3,80})[\"']")
_ANCHOR_REF = re.compile(r"\b((?:docs/)?[\w-]+\.md)#([\w-]+)")
REFERRING = sorted([*ROOT.glob("experiments/**/*.toml"), *ROOT.glob("benchmarks/**/*.toml"),
                    *ROOT.glob("benchmarks/**/*.sh"), *ROOT.glob("ser_cl/**/*.py"), *PAGES])


def section_references(path: Path) -> Iterator[Tuple[Path, str, str]]:
    """(page, anchor or None, quoted section or None) for each reference to a section in ``path``."""
    text = path.read_text(encoding="utf-8")
    joined = re.sub(r"\n[ \t]*(?:#+[ \t]*)?", " ", text)  # a comment continued on the next line
    for name, section in _SECTION_REF.findall(joined):
        yield ROOT / ("README.md" if name == "README" else name), None, section
    for name, anchor in _ANCHOR_REF.findall(text):
        page = ROOT / name if "/" in name or name == "README.md" else ROOT / "docs" / name
        if path.suffix == ".md" and path.parent == ROOT / "docs" and "/" not in name:
            page = ROOT / "docs" / name
        yield page, anchor, None


def test_section_references_resolve():
    """Every "see README, 'Section'" (presets, code comments) and ``x.md#anchor`` outside Markdown
    links names an existing heading of that page."""
    cache: Dict[Path, Set[str]] = {}
    bad = []
    for path in REFERRING:
        for page, anchor, section in section_references(path):
            if not page.is_file():
                if anchor is None or path.suffix != ".md":  # a Markdown link's file: test_relative_links_resolve
                    bad.append(f"{_rel(path)}: {page.name}: no such page")
                continue
            if page not in cache:
                cache[page] = anchors(page)
            slug = anchor if anchor is not None else github_slug(section)
            if slug not in cache[page]:
                bad.append(f"{_rel(path)}: {_rel(page)} has no section {section or '#' + anchor!r}")
    assert not bad, "references to sections that do not exist:\n  " + "\n  ".join(bad)


def test_section_references_are_found(tmp_path):
    sample = tmp_path / "x.toml"
    sample.write_text('# see the README, "CPU\n#   preset"; docs/models.md#speaker-normalisation\n'
                      "# (docs/results.md, 'How the values were chosen')\n")
    refs = list(section_references(sample))
    assert (README, None, "CPU preset") in refs
    assert (ROOT / "docs" / "results.md", None, "How the values were chosen") in refs
    assert (ROOT / "docs" / "models.md", "speaker-normalisation", None) in refs
