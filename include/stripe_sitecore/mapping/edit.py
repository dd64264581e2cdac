"""Editing a mapping file's YAML in place: the comments, the order of keys, flow-style ``{...}``
maps and quotes stay as they were; only what an edit touches changes.

The studio (``stripe_sitecore.ui.studio``) sends edits as small JSON objects; ``apply_edit``
applies one to the text and returns the new text, formatted the way the shipped files are (two
spaces, list dashes indented under their key), so a file saved unchanged is byte for byte the
same. Whether the result is a valid mapping is then for the loader to say
(``loader.compile_mapping``): an edit only refuses what it cannot apply.

Edits (``path`` is a list of keys and indexes into the document, e.g. ``["fields", 3]`` or
``["rules", 2, "fields", 0]``; values are JSON values, or YAML text in ``value_yaml``):

- ``{"op": "set", "path": [...], "key": K, "value": V}``: set one key of a field or rule (a
  field's ``source``, ``transform``, ``default``, ``required``, ``when``; a rule's ``when``,
  ``outcome``, ``reason``). Setting how a field gets its value (``source``, ``first_of``,
  ``sources``, ``constant``, ``template``) removes the other ways, since a field has one.
- ``{"op": "unset", "path": [...], "key": K}``: remove a key (e.g. a field's ``default``).
- ``{"op": "add_field", "field": {...}}``: append a field; refused when a field already maps
  that target, so an accepted suggestion never replaces what someone wrote.
- ``{"op": "remove_field", "path": ["fields", i]}``.
- ``{"op": "set_lookup", "table": T, "key": K, "value": V}`` / ``{"op": "unset_lookup", ...}``:
  one row of a lookup table.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from typing import Any

from stripe_sitecore.mapping.errors import MappingError
from stripe_sitecore.mapping.loader import load_yaml_document

VALUE_KEYS = ("source", "first_of", "sources", "constant", "template")
# Keys whose values the shipped files write in flow style ({path: Currency}); kept so.
FLOW_KEYS = frozenset({"when", "args", "map", "sources", "first_of", "constant", "default"})
FIELD_KEYS = frozenset(
    {*VALUE_KEYS, "target", "transform", "default", "required", "when", "each", "description"}
)
RULE_KEYS = frozenset({"name", "when", "outcome", "reason", "description", "fields"})


class EditError(ValueError):
    """An edit that cannot be applied; the message says which and why."""


@cache
def _permissive_validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator({})


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    # The shipped files' layout: "fields:" then "  - target: ...", maps indented by two.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap a long reason or description
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def parse(text: str, file: str = "<studio>") -> Any:
    """The round-trip tree of a mapping's text. MappingError (file:line) when it is not YAML or
    breaks the loader's limits (size, depth, aliases): checked by the loader's own reader first."""
    load_yaml_document(text, file, _permissive_validator())
    tree = _yaml().load(text)
    if not isinstance(tree, dict):
        raise MappingError(file, [_problem("the file must be a YAML mapping (key: value lines)")])
    return tree


def _problem(message: str) -> Any:
    from stripe_sitecore.mapping.errors import Problem

    return Problem(1, 1, "", message)


def dump(tree: Any) -> str:
    out = io.StringIO()
    _yaml().dump(tree, out)
    return out.getvalue()


def normalise(text: str, file: str = "<studio>") -> str:
    """The text as the studio writes it (the shipped files are unchanged by this)."""
    return dump(parse(text, file))


def value_from_yaml(text: str) -> Any:
    """A value typed in the studio as YAML (``{path: Kind, equals: x}``, ``"007"``, ``12.50``)."""
    if len(text) > 20_000:
        raise EditError("the value is longer than 20000 characters")
    from ruamel.yaml.error import YAMLError

    try:
        tree = _yaml().load(f"value: {text}" if "\n" not in text else "value:\n" + _indent(text))
    except YAMLError as exc:
        raise EditError(f"not a YAML value: {exc}") from None
    return tree["value"] if isinstance(tree, dict) else None


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _styled(value: Any, flow: bool) -> Any:
    """JSON values as ruamel nodes: nested maps and lists in flow style where the files use it."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict) and not hasattr(value, "fa"):
        node = CommentedMap()
        for key, child in value.items():
            node[key] = _styled(child, flow or key in FLOW_KEYS)
        if flow:
            node.fa.set_flow_style()
        return node
    if isinstance(value, list) and not hasattr(value, "fa"):
        node = CommentedSeq(_styled(child, True) for child in value)
        if flow:
            node.fa.set_flow_style()
        return node
    return value


def _node(tree: Any, path: Sequence[str | int]) -> Any:
    node = tree
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise EditError(f"{_render(path)}: no such place in the mapping") from None
    return node


def _render(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _value(edit: dict[str, Any]) -> Any:
    if "value_yaml" in edit:
        if not isinstance(edit["value_yaml"], str):
            raise EditError("value_yaml must be text")
        return value_from_yaml(edit["value_yaml"])
    if "value" not in edit:
        raise EditError("the edit needs a value (or value_yaml)")
    return edit["value"]


def _is_field_list(path: Sequence[str | int]) -> bool:
    return bool(path) and path[-1] in ("fields", "each")


def _allowed_keys(path: Sequence[str | int]) -> frozenset[str]:
    if len(path) >= 2 and path[-2] == "rules":
        return RULE_KEYS
    if len(path) >= 2 and _is_field_list(path[:-1]):
        return FIELD_KEYS
    raise EditError(f"{_render(path)} is neither a field nor a rule")


def targets_in(tree: Any) -> set[str]:
    """Every target the document's top-level fields and map rules write."""
    found = set()
    for spec in list(tree.get("fields") or []):
        if isinstance(spec, dict) and isinstance(spec.get("target"), str):
            found.add(spec["target"])
    for rule in list(tree.get("rules") or []):
        for spec in list((rule or {}).get("fields") or []) if isinstance(rule, dict) else []:
            if isinstance(spec, dict) and isinstance(spec.get("target"), str):
                found.add(spec["target"])
    return found


def apply_edit(text: str, edit: dict[str, Any], file: str = "<studio>") -> str:
    """The mapping's text with one edit applied (see the module docstring)."""
    if not isinstance(edit, dict):
        raise EditError("an edit is a JSON object with an op")
    tree = parse(text, file)
    op = edit.get("op")
    if op in ("set", "unset"):
        path = _path(edit)
        key = edit.get("key")
        if not isinstance(key, str) or key not in _allowed_keys(path):
            known = ", ".join(sorted(_allowed_keys(path)))
            raise EditError(f"{_render(path)}: cannot {op} {key!r} (keys: {known})")
        node = _node(tree, path)
        if not isinstance(node, dict):
            raise EditError(f"{_render(path)} is not a YAML mapping")
        if op == "unset":
            if key in ("target", "name") or (key in VALUE_KEYS and key in node):
                raise EditError(f"{_render(path)}: {key} cannot be removed, only changed")
            node.pop(key, None)
        else:
            value = _styled(_value(edit), key in FLOW_KEYS and key != "transform")
            position = None
            if key in VALUE_KEYS:
                # The new way takes the old one's place, so the field reads as before.
                for other in VALUE_KEYS:
                    if other != key and other in node:
                        position = list(node).index(other)
                        node.pop(other)
            if position is not None and key not in node:
                node.insert(position, key, value)
            else:
                node[key] = value
            if key == "transform" and isinstance(node[key], dict) and "args" in node[key]:
                node[key]["args"] = _styled(dict(node[key]["args"]), True)
    elif op == "add_field":
        spec = edit.get("field")
        if not isinstance(spec, dict) or not isinstance(spec.get("target"), str):
            raise EditError("add_field needs a field with a target")
        if spec["target"] in targets_in(tree):
            raise EditError(
                f"{spec['target']} is already mapped: an added field never replaces one; "
                "change that field instead"
            )
        fields = tree.get("fields")
        if fields is None:
            from ruamel.yaml.comments import CommentedSeq

            fields = tree["fields"] = CommentedSeq()
        fields.append(_styled(dict(spec), False))
        added = fields[-1]
        if isinstance(added.get("transform"), dict) and "args" in added["transform"]:
            added["transform"]["args"] = _styled(dict(added["transform"]["args"]), True)
    elif op == "remove_field":
        path = _path(edit)
        parent = _node(tree, path[:-1])
        if not _is_field_list(path[:-1]) or not isinstance(path[-1], int):
            raise EditError(f"{_render(path)} is not a field")
        try:
            del parent[path[-1]]
        except IndexError:
            raise EditError(f"{_render(path)}: no such field") from None
    elif op in ("set_lookup", "unset_lookup"):
        name, key = edit.get("table"), edit.get("key")
        if not isinstance(name, str) or not isinstance(key, str) or not key:
            raise EditError(f"{op} needs a table name and a non-empty key")
        table = _node(tree, ["lookups", name])
        rows = table.get("map") if isinstance(table, dict) else None
        if not isinstance(rows, dict):
            raise EditError(f"lookups.{name} has no map")
        if op == "unset_lookup":
            if key not in rows:
                raise EditError(f"lookups.{name}.map has no row {key!r}")
            del rows[key]
        else:
            rows[key] = _styled(_value(edit), True)
    else:
        raise EditError(
            f"unknown op {op!r}; known: set, unset, add_field, remove_field, set_lookup, "
            "unset_lookup"
        )
    return dump(tree)


def _path(edit: dict[str, Any]) -> list[str | int]:
    path = edit.get("path")
    if not isinstance(path, list) or not path or not all(isinstance(p, str | int) for p in path):
        raise EditError("path must be a non-empty list of keys and indexes, e.g. ['fields', 0]")
    return [p for p in path if not isinstance(p, bool)]
