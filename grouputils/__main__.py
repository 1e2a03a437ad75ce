"""``python -m grouputils``: the ``grouputils`` command line with this interpreter."""

from grouputils.cli import main

raise SystemExit(main())
