"""The core: settings, tiles and the per-item work of each step.

Pure functions of (settings, item) -> record: parsing and checking settings
(:mod:`.config`), tile maths (:mod:`.tiles`), staging polygons into tiles,
rasterizing tiles and colouring web tiles. Nothing here knows about executors,
the run's state or the course. Imports: the standard library, the field's
libraries, and other ``core`` modules only.
"""
