"""P_pos: part-of-speech tags as ``POS:<TAG>`` extension spans."""

from .task import (
    POSTaggingTask,
    make_pos_task,
)

__all__ = ["POSTaggingTask", "make_pos_task"]
