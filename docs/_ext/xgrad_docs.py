"""A small Sphinx extension for the captum-xgrad docs.

1. Re-exported names. Docstrings refer to the public API as users import it,
   ``captum_xgrad.XGradient`` or ``captum_xgrad.make_x_dnn``, while autodoc documents
   each object once, in the module that defines it (``captum_xgrad.xgradient.XGradient``).
   A ``missing-reference`` handler resolves such a reference to the documented
   object: by importing the name and using its ``__module__``/``__qualname__``, or,
   for a name not (yet) re-exported, by the unique documented ``captum_xgrad.*``
   object with that last component.

   ``.. xgrad-public-names::`` lists the package's ``__all__`` with those links.

2. Committed benchmark results.

``.. xgrad-benchmark-results:: STEM`` shows, for every device folder under
``benchmarks/results/`` (``cpu``, ``cuda``, ...), the Markdown report ``STEM.md``
written by the benchmark scripts (converted to reStructuredText: headings become
rubrics, pipe tables become tables) and the PNG plots named in ``:images:``.

The results are committed by whoever runs the benchmarks, so the directive must not
break the build when they are absent: a folder without the report is skipped, and if
no folder has it the directive renders a note with the command that makes it (logged
at info level, so ``sphinx-build -W`` still passes). Options:

The results folder can be changed with the config value ``xgrad_results_dir``.

``:images:``   space-separated PNG file names to show after the report, if present.
``:command:``  the command that (re)produces the results, shown in the note.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

_log = logging.getLogger(__name__)

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """Markdown inline markup -> reStructuredText, escaping everything else."""
    out: List[str] = []
    pos = 0
    for m in _CODE.finditer(text):
        out.append(_plain(text[pos : m.start()]))
        out.append(_guard(text, m.start(), m.end(), f"``{m.group(1)}``"))
        pos = m.end()
    out.append(_plain(text[pos:]))
    return "".join(out).strip()


def _guard(text: str, start: int, end: int, markup: str) -> str:
    """Inline markup must be delimited by whitespace or punctuation in rST: add an
    escaped (invisible) space where it touches a letter or digit."""
    before = "\\ " if start > 0 and text[start - 1].isalnum() else ""
    after = "\\ " if end < len(text) and text[end].isalnum() else ""
    return before + markup + after


def _plain(text: str) -> str:
    bolds: Dict[str, str] = {}

    def keep(m: "re.Match[str]") -> str:
        key = f"\x00{len(bolds)}\x00"
        bolds[key] = _guard(m.string, m.start(), m.end(), f"**{_escape(m.group(1))}**")
        return key

    text = _BOLD.sub(keep, text)
    text = _escape(text)
    for key, value in bolds.items():
        text = text.replace(key, value)
    return text


def _escape(text: str) -> str:
    return re.sub(r"([\\*_`|<>\[\]])", r"\\\1", text)


def _cells(line: str) -> List[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def markdown_to_rst(md: str) -> List[str]:
    """Convert the Markdown the benchmark scripts write (headings, paragraphs,
    bullet lists, pipe tables, code spans, bold) into reStructuredText lines."""
    lines = md.splitlines()
    rst: List[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            rst += [f".. rubric:: {_inline(heading.group(2))}", ""]
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(
            r"^\s*\|?\s*:?-{3,}", lines[i + 1]
        ):
            header = _cells(line)
            i += 2
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = _cells(lines[i])
                cells += [""] * (len(header) - len(cells))
                rows.append(cells[: len(header)])
                i += 1
            rst += [".. list-table::", "   :header-rows: 1", ""]
            for row in [header] + rows:
                for j, cell in enumerate(row):
                    bullet = "   * - " if j == 0 else "     - "
                    rst.append(bullet + (_inline(cell) or "\\ "))
            rst.append("")
            continue
        if re.match(r"^\s*[-*]\s+", line):
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i].rstrip())
                i += 1
                while (
                    i < len(lines)
                    and lines[i].startswith("  ")
                    and not re.match(r"^\s*[-*]\s+", lines[i])
                ):
                    item += " " + lines[i].strip()
                    i += 1
                rst.append(f"- {_inline(item)}")
            rst.append("")
            continue
        para = [line.strip()]
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and not lines[i].lstrip().startswith(("|", "#", "- ", "* "))
        ):
            para.append(lines[i].strip())
            i += 1
        rst += [_inline(" ".join(para)), ""]
    return rst


class BenchmarkResults(SphinxDirective):
    """``.. xgrad-benchmark-results:: STEM`` (see the module docstring)."""

    required_arguments = 1
    option_spec = {"images": directives.unchanged, "command": directives.unchanged}

    def run(self) -> List[nodes.Node]:
        stem = self.arguments[0]
        images = (self.options.get("images") or "").split()
        srcdir = Path(self.env.srcdir)
        configured = self.config.xgrad_results_dir
        root = Path(configured) if configured else srcdir.parent / "benchmarks" / "results"
        lines: List[str] = []
        found = False
        devices = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for device in devices:
            report = device / f"{stem}.md"
            if not report.is_file():
                continue
            found = True
            self.env.note_dependency(str(report))
            rel = f"benchmarks/results/{device.name}/{stem}.md"  # as committed
            lines += [f".. rubric:: Device folder ``{device.name}`` (``{rel}``)", ""]
            lines += markdown_to_rst(report.read_text(encoding="utf-8"))
            for name in images:
                png = device / name
                if png.is_file():
                    self.env.note_dependency(str(png))
                    # image paths starting with "/" are relative to the docs folder
                    from_docs = Path(os.path.relpath(png.resolve(), srcdir.resolve()))
                    lines += [
                        f".. figure:: /{from_docs.as_posix()}",
                        "   :width: 100%",
                        "",
                        f"   ``benchmarks/results/{device.name}/{name}``",
                        "",
                    ]
        if not found:
            command = self.options.get("command", "")
            _log.info(
                "xgrad-benchmark-results: no benchmarks/results/*/%s.md yet; "
                "rendering a placeholder note",
                stem,
            )
            lines = [
                ".. note::",
                "",
                f"   No ``{stem}.md`` has been committed under ``benchmarks/results/`` yet."
                + (f" Make it with ``{command}``." if command else ""),
                "",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<{stem} results>"), 0, container)
        return container.children


class PublicNames(SphinxDirective):
    """``.. xgrad-public-names::``: a list of ``captum_xgrad.__all__``, each linked to its
    documentation, with the first line of its docstring. Follows the package's exports
    without editing the page."""

    def run(self) -> List[nodes.Node]:
        import importlib
        import inspect

        package = importlib.import_module("captum_xgrad")
        lines: List[str] = []
        for name in sorted(getattr(package, "__all__", ()), key=str.lower):
            if name.startswith("__"):
                continue
            obj = getattr(package, name)
            role = "mod" if inspect.ismodule(obj) else "obj"
            doc = (inspect.getdoc(obj) or "").strip().splitlines()
            summary = doc[0] if doc else ""
            lines.append(f"- :{role}:`captum_xgrad.{name}`" + (f": {summary}" if summary else ""))
        container = nodes.container()
        self.state.nested_parse(StringList(lines + [""], source="<captum_xgrad.__all__>"), 0, container)
        return container.children


def _canonical(target: str) -> List[str]:
    """Candidate documented names for a ``captum_xgrad.*`` reference target."""
    import importlib

    candidates: List[str] = []
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if module and qualname:
            candidates.append(f"{module}.{qualname}")
        break
    return candidates


def _resolve_reexport(app, env, node, contnode):  # noqa: ANN001, ANN201 - Sphinx event
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("captum_xgrad."):
        return None
    domain = env.get_domain("py")
    candidates = _canonical(target)
    if not candidates:  # not importable under that name: match the last component
        last = "." + target.rsplit(".", 1)[-1]
        found = [
            name
            for name, *_ in domain.get_objects()
            if name.startswith("captum_xgrad.") and name.endswith(last)
        ]
        if len(found) == 1:
            candidates = found
    for name in candidates:
        if name == target:
            continue
        ref = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
        )
        if ref is None and node["reftype"] != "obj":
            ref = domain.resolve_xref(
                env, node["refdoc"], app.builder, "obj", name, node, contnode
            )
        if ref is not None:
            return ref
    return None


def setup(app):  # noqa: ANN001, ANN201 - Sphinx's extension entry point
    # where the results are; default: <repository>/benchmarks/results (for tests:
    # ``sphinx-build -D xgrad_results_dir=/some/folder``)
    app.add_config_value("xgrad_results_dir", "", "env")
    app.add_directive("xgrad-benchmark-results", BenchmarkResults)
    app.add_directive("xgrad-public-names", PublicNames)
    app.connect("missing-reference", _resolve_reexport)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
