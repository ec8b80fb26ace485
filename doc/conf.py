"""Sphinx configuration for the skbgp documentation.

Build with ``python -m sphinx -W --keep-going -b html doc doc/_build/html``
from the repository root. Nothing is fetched from the internet: there is no
intersphinx mapping, and references to scikit-learn or torch objects are
plain text.
"""

import os
import re
import sys
import warnings
from datetime import date

# Document the checkout this file lives in, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import skbgp  # noqa: E402

project = "skbgp"
author = "the skbgp developers"
copyright = f"{date.today().year}, {author}"
version = skbgp.__version__
release = skbgp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ------------------------------------------
autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"
# numpydoc would list every method and attribute again in a table of its own;
# the class template lists the methods instead.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# No intersphinx: the build must not reach the network.
intersphinx_mapping = {}

# -- sphinx-gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    # backreferences feed the "Examples using ..." list on the API pages
    "doc_module": ("skbgp",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skbgp": None},
}

# Examples run with a non-interactive backend.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="Matplotlib is currently using agg, which is a non-GUI backend",
)

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skbgp {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_prev_next": False,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}


# -- docstring fixes -------------------------------------------------------------
# Methods inherited from scikit-learn (``score``) link to labels of
# scikit-learn's user guide, e.g. :ref:`coefficient of determination <r2_score>`;
# without intersphinx those labels are undefined, so keep their text only.
_REF = re.compile(r":ref:`([^`<]*?)\s*<[^`>]+>`|:ref:`([^`]+)`")


def _unlink_sklearn_refs(app, what, name, obj, options, lines):
    if not getattr(obj, "__module__", "").startswith("sklearn"):
        return
    lines[:] = [_REF.sub(lambda m: m.group(1) or m.group(2), line) for line in lines]


def setup(app):
    # priority < 500: before numpydoc's own autodoc-process-docstring handler
    app.connect("autodoc-process-docstring", _unlink_sklearn_refs, priority=400)
