"""Sphinx configuration of the captum-xgrad documentation.

Build (what CI runs through ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html    docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

Intersphinx and the network
---------------------------
Links into the PyTorch and Captum API docs need their ``objects.inv`` inventories,
which Sphinx downloads at build time. CI and the developers' machines have no
network, and a failed download is a warning, which ``-W`` turns into an error. So
intersphinx is configured but only *enabled* when ``XGRAD_DOCS_ONLINE=1`` is set
(e.g. for a published build)::

    XGRAD_DOCS_ONLINE=1 python -m sphinx -W -b html docs docs/_build/html

Offline, references such as :class:`torch.nn.Module` simply render as code without a
link; nothing else changes. We do not ship copies of the inventories because they
would go stale with every PyTorch/Captum release.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The package is normally installed (``pip install -e ".[docs]"``); the path makes a
# plain checkout work too. ``_ext`` holds this site's small Sphinx extension.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import captum_xgrad  # noqa: E402

project = "captum-xgrad"
author = "the captum-xgrad developers"
copyright = "the captum-xgrad developers (BSD-3-Clause)"
release = captum_xgrad.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    # MathJax copied into _static/ and loaded from there: formulas render offline
    "sphinx-mathjax-offline",
    "myst_parser",  # the benchmark reports are Markdown, included as written
    "xgrad_docs",  # docs/_ext/xgrad_docs.py: links to re-exported names
]

ONLINE = os.environ.get("XGRAD_DOCS_ONLINE", "") == "1"
if ONLINE:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
        "captum": ("https://captum.ai/api/", None),
    }
    intersphinx_timeout = 10

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "scripts"]
templates_path: list = []
root_doc = "index"
# Module docstrings end with reference lists (``.. [Erion2021] ...``) that are not
# always cited in the text; that is fine, not a broken reference.
suppress_warnings = ["ref.citation"]

# -- autodoc / napoleon -------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = False

# -- doctest ------------------------------------------------------------------------
# Every ``>>>`` example, in the pages and in the docstrings pulled in by autodoc, is
# run by ``-b doctest``. Keep them fast and free of output files.
doctest_global_setup = """
import warnings
import torch
torch.manual_seed(0)
"""
doctest_test_doctest_blocks = "default"

# -- HTML ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"captum-xgrad {release}"
html_static_path = ["_static"]
html_css_files = ["xgrad.css"]  # wide tables scroll instead of being cut off
html_theme_options = {"navigation_with_keys": True}
