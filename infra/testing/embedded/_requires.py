"""psutil, or an error naming the ``embedded`` extra; the package imports this first.

(the ``reaper`` module imports psutil itself, plainly: it runs by path and imports nothing from
``infra``; any import of this package reaches this check before it.)
"""

from infra._imports import require

require("psutil", extra="embedded")
