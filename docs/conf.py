"""Sphinx configuration of elman's documentation site.

    sphinx-build -W -b html docs docs/_build     (tests/test_docs.py runs it: warnings fail)

Pages are Markdown (MyST); the API reference is generated from the docstrings (autodoc, with
napoleon reading their Google-style sections); the figures are the Markdown that the scripts of
``benchmarks/`` print, included as they are (``docs/results/``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "elman"
author = "the elman developers"
copyright = "2026, the elman developers"  # noqa: A001 (Sphinx's name)
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "results/*.md", "lecture/*.md"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "elman"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
