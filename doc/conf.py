"""Sphinx configuration for the skbgp documentation.

Build with ``python -m sphinx -W --keep-going -b html doc doc/_build/html``
from the repository root. Nothing is fetched from the internet, neither by
the build nor by the built pages: there is no intersphinx mapping, references
to scikit-learn or torch objects are plain text, and MathJax is served from
the build's own ``_static/mathjax`` (see "Math" below).
"""

import importlib.util
import os
import re
import shutil
import sys
import warnings
from datetime import date
from pathlib import Path

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

# -- Math ----------------------------------------------------------------------
# Offline math: MathJax 3.2.2 from pip (sphinx-mathjax-offline) in _static; no CDN, no LaTeX.
_MATHJAX_SPEC = importlib.util.find_spec("sphinx-mathjax-offline")
if _MATHJAX_SPEC is None:
    raise RuntimeError(
        "the docs need the package sphinx-mathjax-offline for offline math: "
        'pip install -e ".[docs]"'
    )
_MATHJAX_DIR = Path(_MATHJAX_SPEC.origin).parent / "static" / "mathjax"
# Relative to the build's _static folder.
mathjax_path = "mathjax/tex-chtml.js"
# What tex-chtml.js loads: itself, the TeX extensions it autoloads (\boldsymbol,
# ...), the CHTML fonts and the menu / assistive-MathML modules. The other
# bundles, the SVG fonts and the speech engine (4 MB) stay out.
_MATHJAX_FILES = [
    "tex-chtml.js",
    "input/tex/extensions",
    "output/chtml/fonts/woff-v2",
    "ui",
    "a11y",
]

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
    # the computation-times page would load jQuery and DataTables from CDNs
    "write_computation_times": False,
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
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    # the "On this page" list: the page's sections and, on an API page, its
    # methods one level below the class
    "show_toc_level": 2,
    "show_prev_next": False,
    "footer_start": ["copyright"],
    "footer_end": [],
}
# The whole site's toctree on every page (pydata's own sidebar shows only the
# pages below the current top-level page: nothing on the top-level pages).
html_sidebars = {"**": ["sidebar-nav-full"]}
# "On this page" of an API page: fit(), predict(), ... rather than eight
# entries all starting "BatchedGaussianProcessRegressor.".
toc_object_entries_show_parents = "hide"


# -- docstring fixes -------------------------------------------------------------
# Methods inherited from scikit-learn (``score``) link to labels of
# scikit-learn's user guide, e.g. :ref:`coefficient of determination <r2_score>`;
# without intersphinx those labels are undefined, so keep their text only.
_REF = re.compile(r":ref:`([^`<]*?)\s*<[^`>]+>`|:ref:`([^`]+)`")


def _unlink_sklearn_refs(app, what, name, obj, options, lines):
    if not getattr(obj, "__module__", "").startswith("sklearn"):
        return
    lines[:] = [_REF.sub(lambda m: m.group(1) or m.group(2), line) for line in lines]


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in _MATHJAX_FILES:
        source = _MATHJAX_DIR / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / name)


def setup(app):
    # priority < 500: before numpydoc's own autodoc-process-docstring handler
    app.connect("autodoc-process-docstring", _unlink_sklearn_refs, priority=400)
    app.connect("build-finished", _copy_mathjax)
