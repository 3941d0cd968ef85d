"""The building blocks of a grid's report (:mod:`bench.report` assembles the page).

``records`` (the runs a report reads), ``summary`` (one row per cell and method, the test against
the paper), ``comparisons`` (methods paired within a cell, ranked across cells), ``failures``
(class drops and collapses), ``text`` (how numbers are written), ``sections`` (the sections per
dataset) and ``overview`` (the sections about the whole grid).
"""
