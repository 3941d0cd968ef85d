"""The joblib backends a session sends its runs to: loky (processes on this machine), dask or
ray (a cluster, or a local one started for the session).

:func:`joblib_backend` enters one and yields the ``n_jobs`` to pass to ``joblib.Parallel``; a
backend whose package is missing, or a scheduler that cannot be reached, is a one-line
:class:`~bench.errors.BenchError`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from bench.cli import first_line
from bench.errors import BenchError

__all__ = ["joblib_backend"]


@contextlib.contextmanager
def _loky(jobs: int, threads: int) -> Iterator[int]:
    from joblib import parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=threads):
        yield jobs


@contextlib.contextmanager
def _dask(scheduler: str | None, jobs: int) -> Iterator[int]:
    from joblib import parallel_config

    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise BenchError("the dask backend needs dask.distributed: "
                         "pip install 'lnlbench[dask]'") from None
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:
            raise BenchError(f"cannot reach the dask scheduler at {scheduler}: "
                             f"{first_line(str(exc)) or type(exc).__name__}") from None
    else:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        with parallel_config(backend="dask", wait_for_workers_timeout=600):
            yield -1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _ray(scheduler: str | None, jobs: int) -> Iterator[int]:
    from joblib import parallel_config

    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise BenchError("the ray backend needs ray: pip install 'lnlbench[ray]'") from None
    register_ray()
    started = not ray.is_initialized()
    if started:
        if scheduler:
            try:
                ray.init(address=scheduler)
            except (OSError, ConnectionError, TimeoutError) as exc:
                raise BenchError(f"cannot reach the ray cluster at {scheduler}: "
                                 f"{first_line(str(exc))}") from None
        else:
            ray.init(num_cpus=jobs)
    try:
        with parallel_config(backend="ray"):
            yield jobs if not scheduler else -1
    finally:
        if started:
            ray.shutdown()


def joblib_backend(backend: str, *, scheduler: str | None, jobs: int,
                   threads: int) -> contextlib.AbstractContextManager[int]:
    """Enter ``backend`` (loky, dask or ray); the context yields the n_jobs for Parallel."""
    if backend == "loky":
        return _loky(jobs, threads)
    if backend == "dask":
        return _dask(scheduler, jobs)
    return _ray(scheduler, jobs)
