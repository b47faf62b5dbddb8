"""Reading files that dynafolio did not write in this process, without trusting them.

Every file a user can hand to dynafolio (a saved agent, a config, and the saved forecasters,
fitted strategies and tuning results that later loaders will read) goes through these
helpers before anything is built from it. They bound what reading can cost, and they refuse
anything that is not plain data with a :class:`~dynafolio.errors.DataError` that names the
file and the field:

* **sizes**: a file, a zip archive's central directory and each zip member are capped before
  they are read. A member is read with a bounded read, so a member that lies about its size
  cannot grow past the cap either. Only stored and deflated members are accepted.
* **structure**: a linear scan of the text measures JSON nesting depth and item count
  *before* ``json.loads``, which would otherwise recurse once per level. YAML's event stream
  is measured, aliases expanded, before the document is composed. A parsed tree is walked
  iteratively.
* **numbers**: NaN and ±inf are refused, and so are integers beyond 64 bits. This covers
  JSON's ``NaN``/``Infinity`` literals, literals that overflow such as ``1e999``, and YAML's
  ``.nan``/``.inf``.
* **schema**: :func:`validation_error` turns a pydantic error into one message that names
  each bad field.

Nothing here unpickles anything or imports anything that a file names.
"""

from dynafolio.safe_files.archives import SafeZip, TensorInfo, safetensors_layout
from dynafolio.safe_files.text import (
    MAX_INT,
    Limits,
    check_tree,
    load_json,
    load_toml,
    load_yaml,
    read_bytes,
    short_repr,
    validation_error,
)

__all__ = [
    "MAX_INT",
    "Limits",
    "SafeZip",
    "TensorInfo",
    "check_tree",
    "load_json",
    "load_toml",
    "load_yaml",
    "read_bytes",
    "safetensors_layout",
    "short_repr",
    "validation_error",
]
