"""Reference models: plain-Python, obviously-correct twins of the engine.

`ModelDatabase` mirrors the public API of docs/api.md on dicts and sorted
lists; `ModelPageStore` mirrors the pager as a dict of page images. Tests run
the engine beside them and demand the same results and the same errors.
Models import nothing from the engine but `engine.errors`.
"""

from models.database import (
    MAX_KEY_SIZE,
    MAX_TREE_NAME_BYTES,
    MAX_VALUE_SIZE,
    ModelBatch,
    ModelCheckReport,
    ModelDatabase,
    ModelTree,
)
from models.pagestore import PAGE_SIZE, ModelPageStore

__all__ = [
    "MAX_KEY_SIZE",
    "MAX_TREE_NAME_BYTES",
    "MAX_VALUE_SIZE",
    "PAGE_SIZE",
    "ModelBatch",
    "ModelCheckReport",
    "ModelDatabase",
    "ModelPageStore",
    "ModelTree",
]
