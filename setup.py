"""The packages of the distribution, found at build time (the rest is in pyproject.toml).

``tokenprune/`` installs as ``tokenprune``; the model zoo's folder ``models/`` installs as
``tokenprune_models`` (``[tool.setuptools.package-dir]`` maps the name to the folder), so a
user's own ``models`` package is never shadowed. Every subpackage of either folder is found
here, so a new one ships without editing a list.
"""

from setuptools import find_packages, setup

ZOO_FOLDER, ZOO_PACKAGE = "models", "tokenprune_models"

setup(
    packages=find_packages(include=["tokenprune", "tokenprune.*"])
    + [ZOO_PACKAGE + name[len(ZOO_FOLDER):]
       for name in find_packages(include=[ZOO_FOLDER, f"{ZOO_FOLDER}.*"])],
)  # fmt: skip
