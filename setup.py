"""Packaging: the design card's folders installed under the one top-level name `greenroom`.

`bots/ core/ memory/ models/` stay where the design card puts them and become
`greenroom.bots`, `greenroom.core`, `greenroom.memory` and `greenroom.models`
(setuptools' package-dir). Folders of data (the demo character, the shipped detector weights)
travel as packages of their own, with their files. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

LAYERS = ("bots", "core", "memory", "models")

packages = ["greenroom"] + [
    f"greenroom.{layer}{'.' + sub if sub else ''}"
    for layer in LAYERS
    for sub in ["", *find_namespace_packages(layer, exclude=["*__pycache__*"])]
]
setup(
    packages=packages,
    package_dir={"greenroom": "greenroom", **{f"greenroom.{layer}": layer for layer in LAYERS}},
    package_data={"": ["*.txt", "*.toml", "*.json", "*.md", "*.mako"]},
)
