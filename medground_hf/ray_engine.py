"""The Ray engine (``medground build --engine ray``): the same chunk tasks as the local engine,
run as Ray Data stages on a cluster (or a local Ray instance).

The driver lists the items once and plans the chunks; each stage (records, generation and
verification, shard writing) is a Ray Data ``map`` over the stage's pending chunks with bounded
concurrency, running the same functions as a local build (:mod:`medground_hf.stages`), so the
folder is the same, row for row. Tasks read the corpus and write the work folder and the output
on storage every node sees (a shared filesystem). Needs the ``ray`` extra:
``pip install 'medground-hf[ray]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from .build import BuildError

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger("medground_hf")


def _task_error(error: BaseException) -> BaseException | None:
    """The error a task raised (a bad input file, a generator that cannot go on), found inside
    the exceptions Ray wraps it in; None for a failure of Ray itself."""
    from .errors import InputError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (InputError, BuildError)):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


class RayEngine:
    """Runs tasks as Ray Data stages; joins ``address`` (``auto``: a running ``ray start``
    cluster), else the cluster in ``RAY_ADDRESS``, else starts a local instance."""

    name = "ray"

    def __init__(self, address: str | None = None, num_proc: int | None = None):
        try:
            import ray
            import ray.data  # noqa: F401 - the Data library is the extra's point
        except ImportError as exc:
            raise BuildError(
                "--engine ray needs Ray Data: pip install 'medground-hf[ray]'"
            ) from exc
        self.concurrency = num_proc
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BuildError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))  # machines
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        *,
        desc: str | None,
        weights: Sequence[int] | None = None,
        unit: str = "chunk",
    ) -> list[R]:
        """As :meth:`medground_hf.engine.LocalEngine.map`, as one Ray Data stage."""
        if not tasks:
            return []
        import ray.data
        from ray import cloudpickle

        from .progress import phase_bar

        def run(row: dict) -> dict:
            result = fn(cloudpickle.loads(row["task"]))
            return {"index": row["index"], "result": cloudpickle.dumps(result)}

        weights = list(weights) if weights is not None else [1] * len(tasks)
        rows = [{"index": i, "task": cloudpickle.dumps(t)} for i, t in enumerate(tasks)]
        stage = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            run, concurrency=self.concurrency, num_cpus=1
        )
        results: dict[int, R] = {}
        bar = phase_bar(desc or "", sum(weights), unit, disable=desc is None)
        try:
            for row in stage.iter_rows():
                results[row["index"]] = cloudpickle.loads(row["result"])
                bar.update(weights[row["index"]])
        except Exception as exc:
            cause = _task_error(exc)
            if cause is None:
                raise
            raise cause from None  # the one-line error a local build would give
        finally:
            bar.close()
        return [results[i] for i in range(len(tasks))]

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
