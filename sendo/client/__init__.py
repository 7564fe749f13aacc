"""Clients of the API: REST client, informer cache, work queue."""
from .informer import Informer, obj_key
from .rest import ApiError, Client, kind, path
from .workqueue import WorkQueue

__all__ = ["ApiError", "Client", "Informer", "WorkQueue", "kind", "obj_key", "path"]
