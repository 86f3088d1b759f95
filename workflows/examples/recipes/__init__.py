"""Example recipes (package data; a package of its own so that setuptools ships the folder as part of the package)."""
