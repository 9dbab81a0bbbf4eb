"""What the captum-xgrad docs need and Sphinx does not do: links to re-exported names.

Docstrings refer to the public API as users import it, ``captum_xgrad.XGradient`` or
``captum_xgrad.make_x_dnn``, while autodoc documents each object once, in the module
that defines it (``captum_xgrad.xgradient.XGradient``). A ``missing-reference`` handler
resolves such a reference to the documented object: by importing the name and using
its ``__module__``/``__qualname__``, or, for a name not (yet) re-exported, by the
unique documented ``captum_xgrad.*`` object with that last component.

``.. xgrad-public-names::`` lists the package's ``__all__`` with those links.

(The committed benchmark reports are Markdown; the pages include them with
``myst_parser``, see ``docs/benchmarks.rst``.)
"""

from __future__ import annotations

from typing import List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

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
    app.add_directive("xgrad-public-names", PublicNames)
    app.connect("missing-reference", _resolve_reexport)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
