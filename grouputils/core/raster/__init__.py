"""The raster engine: staged tiles -> GeoTIFFs -> pyramid, one job per module.

One staged tile (``staged/<TMS>/<z>/<x>/<y>.gpkg``) becomes one GeoTIFF
(``geotiff/<TMS>/<z>/<x>/<y>.tif``) with one float32 band per
:class:`~grouputils.core.statistic.Statistic`. Parents up to zoom 0 are made from their
four children. Every step is a pure function of (config, path or tile), so a
plain loop, a process pool or Parsl can map it over tiles.

Each statistic is declared in the config (no code): ``weight_by`` says what a
polygon contributes, ``aggregate`` how contributions meet in a pixel,
``resampling`` how four child pixels become one parent pixel.

========================  ==========================================================
module                    job
========================  ==========================================================
``coverage.py``           exact covered fraction of each pixel; centroid pixels
``statistics.py``         one staged tile's bands (counts, coverage, attributes)
``tags.py``               the GeoTIFF tag schema (GDAL statistics, grouputils' tags)
``geotiff.py``            Cloud-Optimized GeoTIFF writing and reading
``pyramid.py``            a parent from its four children
``areas.py``              ground area of pixels (the package's one implementation)
``summary.py``            the raster summary and covered area read back from disk
``rasterizer.py``         :class:`RasterTiler`, :func:`initialize_rasterizer`
========================  ==========================================================

Summary
-------
Each GeoTIFF carries its own summary row as GeoTIFF metadata tags (and GDAL's
per-band ``STATISTICS_*`` tags), written atomically with the raster. A single
call, :meth:`RasterTiler.write_summary`, reads the tags of the GeoTIFFs on
disk and writes ``raster_summary.csv`` atomically: no process ever appends to
a shared file, re-running a tile replaces its row, and the CSV has exactly
one row per GeoTIFF.

The package root imports nothing; import the module that holds a name (or
the facade :mod:`grouputils.core.rasterize`, which re-exports them all).
"""
