"""Hostile settings for the map-page tests: script in descriptions, HTML in names.

A statistic name holding HTML cannot be declared (names are folder names,
``[A-Za-z0-9_-]+``), so :func:`forged` builds one past the checks, the way a
config from an older version or a hand-edited object could reach the page:
the page must escape what it is given whatever the checks upstream.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from grouputils.core.config import Config, Statistic

#: Each payload records that it ran in ``window.__pwned`` (and would open an alert).
DESCRIPTION = "</script><script>window.__pwned = 'description'; alert(1)</script>"
DESCRIPTION_IMG = "<img src=x onerror=\"window.__pwned = 'description-img'\"> & <!-- more"
UNIT = "</script><script>window.__pwned = 'unit'</script>"
NAME = "<img src=x onerror=\"window.__pwned = 'name'\">"
NAME_QUOTE = "x\" onerror=\"window.__pwned = 'quote'"


def forged(stat: Statistic, **changes: Any) -> Statistic:
    """A copy of ``stat`` with ``changes`` set without validation."""
    out = copy.copy(stat)
    for key, value in changes.items():
        object.__setattr__(out, key, value)
    return out


def hostile_config(config: Config) -> Config:
    """``config`` with script in every description and two forged statistics named with HTML."""
    first, *rest = config.statistics
    stats = [
        dataclasses.replace(first, description=DESCRIPTION, unit=UNIT),
        *(dataclasses.replace(s, description=DESCRIPTION_IMG) for s in rest),
        forged(first, name=NAME, description=DESCRIPTION),
        forged(first, name=NAME_QUOTE, description=DESCRIPTION_IMG),
    ]
    out = copy.copy(config)
    object.__setattr__(out, "statistics", tuple(stats))
    return out
