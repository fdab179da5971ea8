"""Package discovery, so that a new subpackage ships without anyone editing a list.

Everything else is in pyproject.toml. setuptools' declarative ``find`` cannot rename a folder,
and the repository's ``adapters/`` folder installs as ``xai_core.adapters`` (pyproject's
``package-dir``; a top-level ``adapters`` would clash with another PyPI project).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["xai_core", "xai_core.*"])
    + [f"xai_core.{name}" for name in find_packages(include=["adapters", "adapters.*"])],
)
