"""P_ent: entities of open types as ``ENT:<type>`` extension spans."""

from .task import (
    ExtensionEntitiesTask,
    make_extension_entities_task,
)

__all__ = ["ExtensionEntitiesTask", "make_extension_entities_task"]
