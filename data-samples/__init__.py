"""Shipped synthetic IWP sample data (GeoPackages); see README.md in this folder.

This file only makes the folder importable as ``grouputils.data_samples`` in an
editable install: setuptools' editable finder cannot import a package that is
mapped from another folder (``package-dir``) unless it has an ``__init__.py``
(pypa/setuptools#4943). Use :func:`grouputils.teaching.samples.sample_dir` to find it;
:mod:`grouputils.teaching.synthetic` is the generator that made it.
"""
