"""Recipes behind the ``samsa-geo`` command and the example scripts: which
data set, transforms and model each task uses."""
