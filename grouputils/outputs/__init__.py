"""Products made from a run's records and files: the STAC catalogue, the map page, the lazy mosaic.

Imports ``core`` only (and each other), never ``run`` or ``teaching``.
"""
