"""The Ray Data engine shared by ``knowfree apply`` and ``knowfree extend
--engine ray``.

Work is handed to Ray Data as rows (``ray.data.from_items``), and
``map_batches`` runs a callable class on a pool of actors: each actor builds
its pipeline once in ``__init__`` and then processes rows. Results stream back
to the driver, which writes every finished shard itself, so nothing needs a
file system shared with the workers except the model (or knowledge config).

Ray is an optional extra: it is only imported inside these functions, and
:func:`require_ray` turns its absence into KF600 naming the extra.
"""

import contextlib
import logging
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Type

from ..errors import Errors

RAY_EXTRA = "ray"


def require_ray(command: str) -> Any:
    """The ``ray`` module with Ray Data. RAISES ImportError: KF600 naming the
    ``ray`` extra when Ray (or Ray Data's pyarrow/pandas) is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401  (needs pyarrow and pandas: the [data] extra of ray)
    except ImportError as err:
        missing = (getattr(err, "name", None) or "ray").split(".")[0]
        raise ImportError(Errors.KF600.format(command=command, extra=RAY_EXTRA, module=missing)) from None
    return ray


@contextlib.contextmanager
def ray_session(
    address: Optional[str] = None, command: str = "apply --engine ray", **init_kwargs: Any
) -> Iterator[Any]:
    """Connect to Ray for the duration of the block and yield the module.

    address (Optional[str]): a cluster (``auto``, ``ray://host:10001`` or
        ``host:6379``); None starts a local Ray on this machine. A Ray
        already initialized in this process is used as it is and left running.
    init_kwargs: more ``ray.init`` arguments for a local start (``num_cpus``,
        ``object_store_memory`` ...).
    """
    ray = require_ray(command)
    started = False
    if not ray.is_initialized():
        kwargs: Dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if address is None:
            kwargs.update(init_kwargs)
        ray.init(address=address, **kwargs)
        started = True
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # shards complete in input order
    context.enable_progress_bars = False  # the driver shows its own progress bar
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    data_logger.setLevel(logging.WARNING)  # no per-dataset execution plans on the console
    try:
        yield ray
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        data_logger.setLevel(saved_level)
        if started:
            ray.shutdown()


def map_rows(
    rows: List[Dict[str, Any]],
    worker: Type[Callable[[Dict[str, Any]], Dict[str, Any]]],
    worker_kwargs: Dict[str, Any],
    *,
    num_actors: int,
    cpus_per_actor: float = 1.0,
    gpu: bool = False,
) -> Generator[Dict[str, Any], None, None]:
    """Run ``worker`` (a callable class: one instance per actor) over ``rows``
    with Ray Data and yield its output rows as they arrive, in input order.

    Every row is one unit of work (``batch_size=1``): one pipeline batch or
    one shard, so the actors batch exactly the documents the local engine
    batches. Each row is a block of its own (up to 4096 blocks), so that
    work is spread over all actors however few rows there are.
    """
    ray = require_ray("--engine ray")
    n_blocks = max(1, min(len(rows), 4096))
    dataset = ray.data.from_items(rows, override_num_blocks=n_blocks)
    mapped = dataset.map_batches(
        worker,
        fn_constructor_kwargs=worker_kwargs,
        batch_size=1,
        batch_format="default",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=cpus_per_actor,
        num_gpus=1 if gpu else 0,
    )
    yield from mapped.iter_rows()


def ray_error_message(err: BaseException) -> str:
    """The user-facing message of a Ray task error: the worker's KF message
    when there is one, else the last line of the remote traceback."""
    text = str(err)
    marker = text.find("[KF")
    if marker >= 0:
        return text[marker:].splitlines()[0].rstrip(".")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__
