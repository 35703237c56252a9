"""JSON Patch (RFC 6902) over JSON Pointer (RFC 6901), as FHIR R4 uses it for PATCH
(http.html §3.1.0.7.1, ``Content-Type: application/json-patch+json``).

Pure functions on parsed JSON. :class:`PatchInvalid` means the patch document or a path is
wrong (RFC 6902 §5, answered 422 by the API); :class:`PatchTestFailed` means a ``test``
operation did not hold (answered 409: the resource is not in the state the client expected).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchInvalid(ValueError):
    """The patch cannot be applied: malformed operation or a path that does not resolve."""


class PatchTestFailed(PatchInvalid):
    """A ``test`` operation compared unequal."""


def apply_patch(document: Any, *, operations: Any) -> Any:
    """Apply ``operations`` in order to a copy of ``document`` and return it (atomic: on error
    the caller's document is untouched)."""
    if not isinstance(operations, list):
        raise PatchInvalid("a JSON Patch document is an array of operations")
    doc = copy.deepcopy(document)
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchInvalid(f"operation {index} has no 'op'")
        doc = _apply_one(doc, op, index)
    return doc


def parse_pointer(pointer: str) -> list[str]:
    """Split an RFC 6901 pointer into unescaped reference tokens."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchInvalid(f"JSON Pointer must start with '/': {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _apply_one(doc: Any, op: dict[str, Any], index: int) -> Any:
    name = op["op"]
    path = _pointer(op, "path", index)
    if name in {"add", "replace", "test"} and "value" not in op:
        raise PatchInvalid(f"operation {index} ({name}) needs 'value'")
    if name == "add":
        return _add(doc, path, copy.deepcopy(op["value"]))
    if name == "remove":
        return _remove(doc, path)[0]
    if name == "replace":
        _get(doc, path)
        return _add(_remove(doc, path)[0], path, copy.deepcopy(op["value"]))
    if name == "move":
        source = _pointer(op, "from", index)
        if path[: len(source)] == source and len(path) > len(source):
            raise PatchInvalid(f"operation {index}: cannot move a value into itself")
        doc, value = _remove(doc, source)
        return _add(doc, path, value)
    if name == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, _pointer(op, "from", index))))
    if name == "test":
        if _get(doc, path) != op["value"]:
            raise PatchTestFailed(f"operation {index}: test failed at {op['path']}")
        return doc
    raise PatchInvalid(f"operation {index}: unknown op {name!r}")


def _pointer(op: dict[str, Any], key: str, index: int) -> list[str]:
    value = op.get(key)
    if not isinstance(value, str):
        raise PatchInvalid(f"operation {index} needs a string '{key}'")
    return parse_pointer(value)


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchInvalid(f"bad array index {token!r}")
    position = int(token)
    if position > len(container) or (position == len(container) and not allow_end):
        raise PatchInvalid(f"array index {position} out of range")
    return position


def _get(doc: Any, path: list[str]) -> Any:
    node = doc
    for token in path:
        if isinstance(node, dict):
            if token not in node:
                raise PatchInvalid(f"path not found: /{'/'.join(path)}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchInvalid(f"path not found: /{'/'.join(path)}")
    return node


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    token = path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, allow_end=True), value)
    else:
        raise PatchInvalid(f"cannot add below a scalar at /{'/'.join(path[:-1])}")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchInvalid("cannot remove the whole document")
    parent = _get(doc, path[:-1])
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchInvalid(f"path not found: /{'/'.join(path)}")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, allow_end=False))
    raise PatchInvalid(f"path not found: /{'/'.join(path)}")
