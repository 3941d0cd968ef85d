"""Running a grid: the layers under ``python -m bench run`` and ``status`` (:mod:`bench.runner`).

``options`` (every flag of a run, defined once), ``state`` (records and locks on disk),
``session`` (the rounds of a run: retries, crashed workers, signals), ``worker`` (what a worker
process does with one task), ``backends`` (loky, dask, ray), ``devices`` (the GPU pool and
threads per run), ``interrupts`` (Ctrl-C, SIGTERM, SIGHUP), ``progress`` (the lines and the bar),
``status`` (the table of ``status`` and of a dry run) and ``estimates`` (a dry run's cost).
"""
