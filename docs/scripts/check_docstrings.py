#!/usr/bin/env python
"""List public functions and classes whose docstrings lack a NumPy-style section.

    python docs/scripts/check_docstrings.py          # report, exit 0
    python docs/scripts/check_docstrings.py --strict # exit 1 if anything is missing

The project's standard: every public function and class (the names in the ``__all__``
of every public module of ``captum_xgrad``) has a docstring with **Parameters**
(when it takes any), **Returns** (functions that return something), **Raises** and
**Examples**; for classes the constructor's parameters go in the class docstring.
Public methods are checked for a docstring, Parameters, Returns and Raises (their
class holds the example); nn.Module/Captum protocol methods (``forward``...) are
skipped. A missing Raises alone is listed separately, because a function that cannot
raise has nothing to list.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
from typing import Dict, List, Tuple

SECTIONS = ("Parameters", "Returns", "Raises", "Examples")


def _sections(doc: str) -> set:
    found = set()
    lines = doc.splitlines()
    for a, b in zip(lines, lines[1:]):
        if re.fullmatch(r"\s*-{3,}\s*", b) and a.strip():
            found.add(a.strip())
    if "Yields" in found:
        found.add("Returns")
    if "Warns" in found:
        found.add("Raises")
    return found


def _takes_parameters(func) -> bool:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return any(p for name, p in sig.parameters.items() if name not in ("self", "cls"))


def _returns_something(func) -> bool:
    try:
        ann = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return True
    return ann not in (None, "None", inspect.Signature.empty) or ann is inspect.Signature.empty


def _check(name: str, obj, is_method: bool = False) -> List[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["docstring"]
    have = _sections(doc)
    missing = []
    if inspect.isclass(obj):
        init = obj.__init__
        inherited = init is getattr(obj.__mro__[1], "__init__", None) or issubclass(
            obj, BaseException
        )
        if (
            not inherited
            and _takes_parameters(init)
            and "Parameters" not in have
            and "Attributes" not in have
        ):
            missing.append("Parameters")
        for section in ("Raises", "Examples"):
            if section not in have:
                missing.append(section)
        return missing
    if _takes_parameters(obj) and "Parameters" not in have:
        missing.append("Parameters")
    if _returns_something(obj) and "Returns" not in have:
        missing.append("Returns")
    for section in ("Raises",) if is_method else ("Raises", "Examples"):
        if section not in have:
            missing.append(section)
    return missing


#: nn.Module / Captum protocol methods, documented by their class
_PROTOCOL = {"forward", "extra_repr", "has_convergence_delta", "attribute_future"}


def audit() -> Dict[str, List[Tuple[str, List[str]]]]:
    import captum_xgrad

    report: Dict[str, List[Tuple[str, List[str]]]] = {}
    seen = set()
    names = ["captum_xgrad"] + [
        info.name
        for info in pkgutil.walk_packages(captum_xgrad.__path__, "captum_xgrad.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    for mod_name in names:
        module = importlib.import_module(mod_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            key = (getattr(obj, "__module__", mod_name), getattr(obj, "__qualname__", name))
            if key in seen:
                continue
            seen.add(key)
            where = key[0]
            missing = _check(name, obj)
            if missing:
                report.setdefault(where, []).append((key[1], missing))
            if inspect.isclass(obj):
                fields = getattr(obj, "__dataclass_fields__", {})
                for meth_name, meth in vars(obj).items():
                    if meth_name in fields:  # dataclass fields are documented as Attributes
                        continue
                    if meth_name.startswith("_") or meth_name in _PROTOCOL or not (
                        inspect.isfunction(meth) or isinstance(meth, property)
                    ):
                        continue
                    if isinstance(meth, property):
                        if not (meth.__doc__ or "").strip():
                            report.setdefault(where, []).append(
                                (f"{key[1]}.{meth_name}", ["docstring"])
                            )
                        continue
                    missing = _check(meth_name, meth, is_method=True)
                    if missing:
                        report.setdefault(where, []).append((f"{key[1]}.{meth_name}", missing))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 if anything is missing")
    args = parser.parse_args()
    report = audit()
    total = 0
    only_raises = []
    for module in sorted(report):
        lines = []
        for name, missing in report[module]:
            if missing == ["Raises"]:
                only_raises.append(f"{module}.{name}")
                continue
            lines.append(f"  {name}: missing {', '.join(missing)}")
        if lines:
            print(module)
            print("\n".join(lines))
            total += len(lines)
    print(f"{total} public object(s) missing a docstring, Parameters, Returns or Examples")
    if only_raises:
        print(f"{len(only_raises)} more with everything but a Raises section (fine where "
              "nothing can be raised): " + ", ".join(only_raises))
    total += len(only_raises)
    return 1 if (args.strict and total) else 0


if __name__ == "__main__":
    sys.exit(main())
