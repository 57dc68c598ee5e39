"""Packaging: pyproject.toml holds everything but one thing its tables cannot say next to
automatic package discovery: the repository's ``data/`` folder (the embedded model, the corpus,
the tasks and model configs) is installed as ``qcourse/assets``, so a wheel or ``pip install .``
carries it and :mod:`qcourse.paths` finds it through the package."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["qcourse", "qcourse.*"]) + ["qcourse.assets"],
    package_dir={"qcourse.assets": "data"},
)
