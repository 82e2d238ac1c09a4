"""P_seg: word segmentation as ``SEG:WORD`` extension spans."""

from .task import (
    SegmentationTask,
    make_segmentation_task,
)

__all__ = ["SegmentationTask", "make_segmentation_task"]
