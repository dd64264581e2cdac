"""Loading mapping files: YAML with line numbers, the JSON Schema, then the checks a schema cannot
make (known transforms and their arguments, lookup tables, paths, importable Python functions).

Problems are reported together, each as ``file:line:column: where: what``: all of the schema's,
or, once the schema is satisfied, all of the rest.

``load_yaml_document`` is the one way the project reads a configuration YAML file (mappings and
the fraud rules): bounded in size, depth and alias expansion, so a hostile or broken file is a
``MappingError`` within milliseconds and a few MiB, never minutes and a ``MemoryError``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from stripe_sitecore.mapping import metadata
from stripe_sitecore.mapping.conditions import Condition
from stripe_sitecore.mapping.engine import BoundTransform, Field, Mapping, Rule, Template
from stripe_sitecore.mapping.errors import MappingError, Problem, TransformError
from stripe_sitecore.mapping.paths import MISSING, Path, parse_target
from stripe_sitecore.mapping.transforms import REGISTRY, Context, LookupTable

if TYPE_CHECKING:
    import jsonschema

DEFAULT_MAPPINGS_DIR = FilePath(__file__).resolve().parents[2] / "mappings"
SCHEMA_PATH = DEFAULT_MAPPINGS_DIR / "mapping.schema.json"
MAPPINGS_DIR_ENV = "STRIPE_SITECORE_MAPPINGS_DIR"

# Top-level packages the Python escape hatch may import from; the environment variable adds more
# (comma-separated). A mapping file must not be a way to run arbitrary library functions.
PYTHON_MODULES_ENV = "STRIPE_SITECORE_MAPPING_MODULES"
DEFAULT_PYTHON_MODULES = ("stripe_sitecore",)

Where = tuple[str | int, ...]

# Limits of a configuration YAML file. The shipped files are 3-8 KB with at most ~520 values:
# these leave ample room for big lookup tables and stop an alias bomb ("billion laughs": a few
# lines of nested anchors that expand to 10^9 values) or a giant file before it costs anything.
MAX_FILE_BYTES = 256 * 1024
MAX_VALUES = 20_000  # every scalar, list and mapping, counted once per place it appears
MAX_DEPTH = 50


def mappings_dir() -> FilePath:
    return FilePath(os.environ.get(MAPPINGS_DIR_ENV) or DEFAULT_MAPPINGS_DIR)


def resolve_mapping_path(name_or_path: str | os.PathLike[str]) -> FilePath:
    """A bare name is a file in the mappings directory; anything else is a path."""
    text = os.fspath(name_or_path)
    if os.sep in text or "/" in text or text.endswith((".yaml", ".yml")):
        return FilePath(text).resolve()
    return (mappings_dir() / f"{text}.yaml").resolve()


_cache: dict[FilePath, tuple[tuple[int, int], Mapping]] = {}
_cache_lock = threading.Lock()


def load_mapping(name_or_path: str | os.PathLike[str]) -> Mapping:
    """The compiled mapping, re-read only when the file changed; MappingError if it is broken."""
    path = resolve_mapping_path(name_or_path)
    try:
        stat = path.stat()
    except OSError as exc:
        known = ", ".join(sorted(p.stem for p in mappings_dir().glob("*.yaml")))
        raise MappingError(
            str(path), [Problem(None, None, "", f"cannot read: {exc.strerror} (known: {known})")]
        ) from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    mapping = compile_mapping(read_yaml_file(path), str(path))
    with _cache_lock:
        _cache[path] = (stamp, mapping)
    return mapping


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def compile_mapping(text: str, file: str) -> Mapping:
    """Parse, validate and compile one mapping file's text; MappingError lists every problem."""
    document = load_yaml_document(text, file, _validator())
    compiler = _Compiler(document.locator)
    mapping = compiler.mapping(document.spec, file)
    if compiler.problems:
        raise MappingError(file, compiler.problems)
    return mapping


# --- reading a configuration YAML document ------------------------------------------------------


@dataclass(frozen=True)
class YamlDocument:
    """A schema-valid configuration document: ``spec`` as plain JSON-like values (YAML floats as
    exact ``Decimal``), ``locator`` to point problems found later at their line and column."""

    file: str
    spec: Any
    locator: Locator

    def problem(self, where: Sequence[str | int], message: str) -> Problem:
        line, column = self.locator.position(where)
        return Problem(line, column, _render_where(where), message)


def read_yaml_file(path: str | os.PathLike[str], error: type[MappingError] = MappingError) -> str:
    """A configuration file's text, refused (``error``) when it cannot be read or is larger than
    ``MAX_FILE_BYTES``; never more than that is read, whatever the file claims to be."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(file, [Problem(None, None, "", f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES} bytes, the limit for a YAML file here"
        raise error(file, [Problem(None, None, "", message)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text: byte {exc.start} is {data[exc.start : exc.start + 1]!r}"
        raise error(file, [Problem(None, None, "", message)]) from None


def load_yaml_document(
    text: str,
    file: str,
    validator: jsonschema.protocols.Validator,
    error: type[MappingError] = MappingError,
) -> YamlDocument:
    """Parse one YAML document and check it against a JSON Schema validator.

    Raises ``error`` (a ``MappingError``) listing, as ``file:line:column: where: what``, the YAML
    syntax error, or a broken limit (``MAX_FILE_BYTES``, ``MAX_DEPTH``, ``MAX_VALUES`` counted
    with every alias expanded, aliases to a value that contains them), or every schema problem.
    """
    if len(text) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES} bytes, the limit for a YAML file here"
        raise error(file, [Problem(None, None, "", message)])
    tree = _parse_yaml(text, file, error)
    locator = Locator(tree)
    spec = _plain(tree)
    problems = [p for e in validator.iter_errors(spec) for p in _problems(e, locator)]
    if problems:
        raise error(file, problems)
    return YamlDocument(file, spec, locator)


def _parse_yaml(text: str, file: str, error: type[MappingError]) -> Any:
    # Imported here: ruamel costs time, and the flows import this module.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    composer = _bounded_composer()
    yaml = YAML(typ="rt")
    yaml.Composer = composer
    yaml.max_depth = MAX_DEPTH
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        elif exc.context:
            message = f"{exc.context}: {message}"
        if isinstance(exc, composer.DepthExceeded):
            message = f"values nest deeper than {MAX_DEPTH} levels (the limit)"
        elif not isinstance(exc, composer.LimitExceeded):
            message = f"YAML syntax error: {message}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise error(file, [Problem(line, column, "", message)]) from None
    except YAMLError as exc:
        raise error(file, [Problem(None, None, "", f"YAML syntax error: {exc}")]) from None
    if tree is None:
        raise error(file, [Problem(1, 1, "", "the file is empty")])
    return tree


@cache
def _bounded_composer() -> type:
    """ruamel's composer, counting values as they would be once every alias is expanded.

    An alias costs nothing to compose (it is a reference to the anchored node), so a bomb stays a
    few nodes in the composer; it explodes only later, when the document is copied into plain
    values and validated. Counting here, with the size each anchored node expands to, stops it at
    the alias that crosses ``MAX_VALUES``, before anything large exists.
    """
    from ruamel.yaml.composer import Composer, MaxDepthExceededError
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.events import AliasEvent
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    class LimitExceeded(MarkedYAMLError):
        pass

    class BoundedComposer(Composer):
        DepthExceeded = MaxDepthExceededError

        def compose_document(self) -> Any:
            self._sizes: dict[int, int] = {}
            self._values = 0
            return super().compose_document()

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.parser.check_event(AliasEvent):
                event = self.parser.peek_event()
                target = self.anchors.get(event.anchor)
                if target is not None and id(target) not in self._sizes:
                    raise LimitExceeded(
                        None,
                        None,
                        f"alias *{event.anchor} refers to a value that contains it (a "
                        "recursive alias)",
                        event.start_mark,
                    )
                node = super().compose_node(parent, index)
                self._count(self._sizes[id(node)], event.start_mark, f"alias *{event.anchor}")
                return node
            node = super().compose_node(parent, index)
            if isinstance(node, SequenceNode):
                size = 1 + sum(self._sizes[id(child)] for child in node.value)
            elif isinstance(node, MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
            self._count(1, node.start_mark, "this value")
            return node

        def _count(self, values: int, mark: Any, what: str) -> None:
            self._values += values
            if self._values > MAX_VALUES:
                raise LimitExceeded(
                    None,
                    None,
                    f"{what} brings the document to more than {MAX_VALUES} values once "
                    "aliases are expanded (the limit; nested anchors and aliases that multiply "
                    "are refused)",
                    mark,
                )

    BoundedComposer.LimitExceeded = LimitExceeded
    return BoundedComposer


def _plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain JSON-like values; YAML floats as exact Decimals."""
    if isinstance(node, dict):
        return {LookupTable.key(k) if k is not None else "null": _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, float):
        return Decimal(repr(float(node)))
    if isinstance(node, int):
        return int(node)
    if isinstance(node, date):
        return node.isoformat()
    return str(node)


class Locator:
    """Where a JSON path of the plain document is in the YAML text (1-based line, column)."""

    def __init__(self, tree: Any):
        self.tree = tree

    def position(self, where: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        node, line, column = self.tree, 1, 1
        for part in where:
            try:
                if isinstance(node, dict):
                    original = next(k for k in node if LookupTable.key(k) == part)
                    child = node[original]
                    # An object or list is shown at its key, a scalar at its value.
                    at_key = key or isinstance(child, dict | list)
                    row, col = (node.lc.key if at_key else node.lc.value)(original)
                    node = child
                else:
                    row, col = node.lc.item(part)
                    node = node[part]
            except (StopIteration, KeyError, IndexError, TypeError, AttributeError):
                break
            line, column = row + 1, col + 1
        return line, column


def _render_where(where: Sequence[str | int]) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    Decimal: "number",
    type(None): "null",
}


def _problems(
    error: jsonschema.ValidationError, locator: Locator, prefix: Where = ()
) -> Iterator[Problem]:
    where = (*prefix, *error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("x-errors", {})
    if error.validator == "additionalProperties":
        known = list(schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                line, column = locator.position((*where, key), key=True)
                message = f"unknown key {key!r}{_suggest(key, known)}"
                yield Problem(line, column, _render_where(where), message)
        return
    if error.validator in custom:
        message = custom[error.validator].replace("{instance}", repr(error.instance))
    elif error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        message = f"missing required key {missing[0]!r}"
    elif error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        message = f"expected {expected}, got {got} {error.instance!r}"
    elif error.validator == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        message = f"{error.instance!r} is not one of {choices}"
    else:
        message = error.message
    line, column = locator.position(where)
    yield Problem(line, column, _render_where(where), message)


def _python_modules() -> tuple[str, ...]:
    extra = os.environ.get(PYTHON_MODULES_ENV, "")
    return (*DEFAULT_PYTHON_MODULES, *(m.strip() for m in extra.split(",") if m.strip()))


class _Compiler:
    """Turns the schema-valid document into a Mapping, collecting the problems it finds."""

    def __init__(self, locator: Locator):
        self.locator = locator
        self.problems: list[Problem] = []
        self.lookups: dict[str, LookupTable] = {}
        self.metadata_targets: tuple[tuple[str, ...], ...] = ()

    def problem(self, where: Where, message: str) -> None:
        line, column = self.locator.position(where)
        self.problems.append(Problem(line, column, _render_where(where), message))

    def path(self, text: str, where: Where) -> Path | None:
        try:
            return Path.parse(text)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None

    def mapping(self, spec: dict[str, Any], file: str) -> Mapping:
        for name, table in spec.get("lookups", {}).items():
            self.lookups[name] = LookupTable(
                name, table["map"], table.get("default"), has_default="default" in table
            )
        self.metadata_targets = tuple(parse_target(t) for t in spec.get("stripe_metadata", ()))
        payload_type = spec.get("payload_type")
        if payload_type is not None:
            from stripe_sitecore.validation.suites import SUITES

            if payload_type not in SUITES:
                known = ", ".join(sorted(SUITES))
                self.problem(
                    ("payload_type",), f"unknown payload type {payload_type!r} (known: {known})"
                )
        fields = tuple(self.fields(spec["fields"], ("fields",)))
        rules = tuple(self.rules(spec.get("rules", []), ("rules",)))
        key_path = self.path(spec["key"], ("key",)) if "key" in spec else None
        return Mapping(
            name=spec["name"],
            file=file,
            source=spec["source"],
            target=spec["target"],
            fields=fields,
            rules=rules,
            lookups=self.lookups,
            key_path=key_path,
            payload_type=payload_type,
            stripe_metadata=self.metadata_targets,
            description=spec.get("description", ""),
            settings=dict(spec.get("settings", {})),
        )

    def rules(self, specs: list[dict[str, Any]], where: Where) -> Iterator[Rule]:
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            at = (*where, index)
            if spec["name"] in seen:
                self.problem((*at, "name"), f"rule name {spec['name']!r} is used twice")
            seen.add(spec["name"])
            when = self.condition(spec["when"], (*at, "when"))
            reason = None
            if "reason" in spec:
                reason = self.template(spec["reason"], (*at, "reason"))
            fields = tuple(self.fields(spec.get("fields", []), (*at, "fields")))
            if when is not None:
                yield Rule(spec["name"], when, spec.get("outcome", "map"), reason, fields)

    def condition(self, spec: dict[str, Any], where: Where) -> Condition | None:
        try:
            return Condition.compile(spec)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None

    def template(self, text: str, where: Where) -> Template | None:
        try:
            return Template.parse(text)
        except ValueError as exc:
            self.problem(where, f"placeholder: {exc}")
            return None

    def fields(
        self, specs: list[dict[str, Any]], where: Where, nested: bool = False
    ) -> Iterator[Field]:
        for index, spec in enumerate(specs):
            compiled = self.field(spec, (*where, index), nested)
            if compiled is not None:
                yield compiled

    def field(self, spec: dict[str, Any], where: Where, nested: bool) -> Field | None:
        problems_before = len(self.problems)
        parts = parse_target(spec["target"])
        if not nested:
            self.check_metadata_key(parts, (*where, "target"))
        source: Any
        if "source" in spec:
            kind, source = "source", self.path(spec["source"], (*where, "source"))
        elif "first_of" in spec:
            kind = "first_of"
            source = tuple(
                self.path(p, (*where, "first_of", i)) for i, p in enumerate(spec["first_of"])
            )
        elif "sources" in spec:
            kind = "sources"
            source = {n: self.path(p, (*where, "sources", n)) for n, p in spec["sources"].items()}
        elif "constant" in spec:
            kind, source = "constant", spec["constant"]
        else:
            kind, source = "template", self.template(spec["template"], (*where, "template"))
        each = None
        if "each" in spec:
            if kind not in ("source", "first_of"):
                self.problem((*where, "each"), "each needs a list from source or first_of")
            each = tuple(self.fields(spec["each"], (*where, "each"), nested=True))
        transform = None
        if "transform" in spec:
            transform = self.transform(spec["transform"], (*where, "transform"))
        when = self.condition(spec["when"], (*where, "when")) if "when" in spec else None
        if len(self.problems) > problems_before:
            return None
        return Field(
            target=spec["target"],
            parts=parts,
            kind=kind,
            source=source,
            transform=transform,
            when=when,
            required=spec.get("required", False),
            default=spec.get("default", MISSING),
            each=each,
        )

    def check_metadata_key(self, parts: tuple[str, ...], where: Where) -> None:
        for prefix in self.metadata_targets:
            if len(parts) == len(prefix) + 1 and parts[: len(prefix)] == prefix:
                problem = metadata.key_problem(parts[-1])
                if problem:
                    self.problem(where, problem[1])
            elif len(parts) > len(prefix) + 1 and parts[: len(prefix)] == prefix:
                self.problem(where, "Stripe metadata values are strings; nothing nests inside")

    def transform(self, spec: str | dict[str, Any], where: Where) -> BoundTransform | None:
        shorthand = isinstance(spec, str)
        spec = {"name": spec} if shorthand else spec
        args = spec.get("args", {})
        if "python" in spec:
            fn = self.python(spec["python"], (*where, "python"))
            path_args = self.path_args(args, where)
            if fn is None or path_args is None:
                return None
            constants = {k: v for k, v in args.items() if k not in path_args}
            return BoundTransform(spec["python"], fn, constants, path_args)
        name = spec["name"]
        transform = REGISTRY.get(name)
        if transform is None:
            self.problem(
                where if shorthand else (*where, "name"),
                f"unknown transform {name!r}{_suggest(name, list(REGISTRY))}; built-ins: "
                f"{', '.join(sorted(REGISTRY))}; or python: package.module:function",
            )
            return None
        import jsonschema

        validator = jsonschema.Draft202012Validator(transform.args_schema)
        args_problems = [
            p
            for error in validator.iter_errors(args)
            for p in _problems(error, self.locator, (*where, "args"))
        ]
        if args_problems:
            self.problems.extend(args_problems)
            return None
        if name == "lookup" and args["table"] not in self.lookups:
            known = ", ".join(sorted(self.lookups)) or "none defined"
            self.problem(
                (*where, "args", "table"),
                f"no lookup table {args['table']!r} in lookups (known: {known})",
            )
            return None
        path_args = self.path_args(args, where)
        if path_args is None:
            return None
        constants = {k: v for k, v in args.items() if k not in path_args}
        return BoundTransform(name, transform.fn, constants, path_args)

    def path_args(self, args: dict[str, Any], where: Where) -> dict[str, Path] | None:
        """The arguments given as ``{path: ...}``, parsed; None if one is not a valid path."""
        parsed: dict[str, Path] = {}
        valid = True
        for name, value in args.items():
            if isinstance(value, dict) and list(value) == ["path"]:
                path = self.path(value["path"], (*where, "args", name, "path"))
                valid = valid and path is not None
                if path is not None:
                    parsed[name] = path
        return parsed if valid else None

    def python(self, reference: str, where: Where) -> Callable[..., Any] | None:
        module_name, _, function_name = reference.partition(":")
        allowed = _python_modules()
        if module_name.split(".")[0] not in allowed:
            self.problem(
                where,
                f"{module_name!r} is not under an allowed package ({', '.join(allowed)}; add "
                f"more with {PYTHON_MODULES_ENV})",
            )
            return None
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            self.problem(where, f"cannot import {module_name!r}: {exc}")
            return None
        function = getattr(module, function_name, None)
        if function_name.startswith("_") or not callable(function):
            self.problem(where, f"{module_name!r} has no public callable {function_name!r}")
            return None
        return _python_transform(reference, function)


def _python_transform(reference: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(value: Any, args: dict[str, Any], ctx: Context) -> Any:
        try:
            return function(value, **args)
        except TransformError:
            raise
        except ValueError as exc:
            raise TransformError(f"python.{reference}", str(exc)) from None

    return call
