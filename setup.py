"""The optional C accelerator of the bulk merge (src/profilestore/_bulkmerge.c). Everything else is
in pyproject.toml. Without a compiler the install goes on without it, and the pure-Python merge
(bulkmerge.merge_attributes) does the same work."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("profilestore._bulkmerge", ["src/profilestore/_bulkmerge.c"], optional=True)])
