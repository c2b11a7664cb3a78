"""Tables to a knowledge graph, declared once: the mapping spec and the graph schema it implies.

A *mapping* says how each table becomes part of the graph (the structured-data-to-KG step of
Structured-GraphRAG, arXiv 2409.17580, made deterministic):

``node``
    the label every row of the table becomes (optional: a table may only contribute edges);
``key``
    the columns that identify a row; without it the row number is the identity;
``properties``
    the columns kept on the node, each with a type (``STRING``, ``INT64``, ``DOUBLE``, ``BOOL``,
    ``DATE``; dates are stored as ISO ``YYYY-MM-DD`` strings so every backend compares them alike);
``relationships``
    foreign keys: one or more columns that point at another node. The target is either another
    table's node (matched on that table's key, or on ``match_on`` columns) or an implicit node
    created from the values themselves (``Team {name}``);
``derived``
    relationships computed from a row, e.g. ``WINNER``/``LOSER`` from two score columns.

The mapping is a plain dict (or a JSON / TOML file), validated by :func:`parse_mapping`. Every
node has a string primary key ``id``; implicit nodes also carry ``name`` (or the properties the
foreign key names).
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "PROPERTY_TYPES",
    "DerivedSpec",
    "GraphSchema",
    "NodeType",
    "RelSpec",
    "RelType",
    "TableSpec",
    "load_mapping",
    "parse_mapping",
]

PROPERTY_TYPES = ("STRING", "INT64", "DOUBLE", "BOOL", "DATE")
# Labels, types and property names end up inside Cypher text, so they must be plain identifiers.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESERVED_PROPERTIES = ("id",)
DERIVED_RULES = ("greater", "less", "equal")


def check_identifier(value: Any, what: str) -> str:
    """Return ``value`` if it is a safe Cypher identifier, else raise ``ValueError``."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{what} must be a plain identifier (letters, digits, underscore; not starting with a "
            f"digit), got {value!r}; rename it in the schema"
        )
    return value


@dataclass(frozen=True)
class NodeType:
    """One node label: its properties and their types (``id`` is always the STRING key)."""

    label: str
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "properties": dict(self.properties)}


@dataclass(frozen=True)
class RelType:
    """One relationship type and the (from label, to label) pairs it connects."""

    type: str
    pairs: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "pairs": [list(pair) for pair in self.pairs]}


@dataclass(frozen=True)
class GraphSchema:
    """Labels, relationship types with their endpoints, and property types of a graph."""

    nodes: dict[str, NodeType]
    relationships: dict[str, RelType]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [node.to_dict() for node in self.nodes.values()],
            "relationships": [rel.to_dict() for rel in self.relationships.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphSchema:
        nodes = {
            item["label"]: NodeType(item["label"], dict(item.get("properties", {})))
            for item in data.get("nodes", [])
        }
        rels = {
            item["type"]: RelType(item["type"], tuple(tuple(pair) for pair in item["pairs"]))
            for item in data.get("relationships", [])
        }
        return cls(nodes, rels)

    def property_type(self, label: str, name: str) -> str | None:
        """The type of ``label.name``, ``"STRING"`` for ``id``, ``None`` when it does not exist."""
        node = self.nodes.get(label)
        if node is None:
            return None
        if name == "id":
            return "STRING"
        return node.properties.get(name)

    def describe(self) -> str:
        """A compact text form, used in LLM prompts and by ``eightfold graph schema``."""
        lines = ["Node labels (every node has the STRING key `id`):"]
        for node in self.nodes.values():
            props = ", ".join(f"{name}: {kind}" for name, kind in node.properties.items())
            lines.append(f"  (:{node.label} {{{props}}})")
        lines.append("Relationships:")
        for rel in self.relationships.values():
            for src, dst in rel.pairs:
                lines.append(f"  (:{src})-[:{rel.type}]->(:{dst})")
        return "\n".join(lines)


@dataclass(frozen=True)
class RelSpec:
    """A foreign key: ``columns`` of the row point at a ``node`` through ``type``.

    ``direction="out"`` draws ``(row)-[:type]->(target)``; ``"in"`` draws the reverse. A table
    without its own node may give ``source`` (columns and label) to link two referenced nodes.
    """

    type: str
    node: str
    columns: tuple[str, ...]
    match_on: tuple[str, ...] | None = None
    node_properties: dict[str, str] = field(default_factory=dict)
    direction: str = "out"
    source: RelSpec | None = None


@dataclass(frozen=True)
class DerivedSpec:
    """A relationship derived from a row: compare two columns, pick one of two target columns.

    With ``rule="greater"`` the row points at ``choose[0]`` when ``compare[0] > compare[1]``, at
    ``choose[1]`` when ``compare[1] > compare[0]``, and at nothing on a tie (so a draw has no
    ``WINNER``); ``"less"`` is the mirror image (``LOSER``).
    """

    type: str
    node: str
    rule: str
    compare: tuple[str, str]
    choose: tuple[str, str]


@dataclass(frozen=True)
class TableSpec:
    """How one table becomes nodes and relationships (see the module docstring)."""

    name: str
    node: str | None
    key: tuple[str, ...] | None
    properties: dict[str, str]
    relationships: tuple[RelSpec, ...]
    derived: tuple[DerivedSpec, ...]
    file: str | None = None
    missing: tuple[str, ...] = ("", "NA")

    def columns(self) -> set[str]:
        """Every column this spec reads."""
        cols = set(self.key or ()) | set(self.properties)
        for rel in self.relationships:
            cols |= set(rel.columns) | set(rel.node_properties.values())
            if rel.source is not None:
                cols |= set(rel.source.columns) | set(rel.source.node_properties.values())
        for derived in self.derived:
            cols |= set(derived.compare) | set(derived.choose)
        return cols


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{what} must be a column name or a non-empty list of names, got {value!r}")


def _parse_rel(raw: Any, where: str) -> RelSpec:
    if not isinstance(raw, Mapping):
        raise TypeError(f"{where} must be a table (dict), got {type(raw).__name__}")
    unknown = set(raw) - {
        "type",
        "node",
        "column",
        "columns",
        "match_on",
        "node_properties",
        "direction",
        "source",
    }
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    if "column" not in raw and "columns" not in raw:
        raise ValueError(f"{where} needs 'column' (or 'columns'): the foreign-key column(s)")
    columns = _strings(raw.get("columns", raw.get("column")), f"{where}.columns")
    direction = raw.get("direction", "out")
    if direction not in ("out", "in"):
        raise ValueError(f"{where}.direction must be 'out' or 'in', got {direction!r}")
    node_properties = dict(raw.get("node_properties") or {})
    for prop, column in node_properties.items():
        check_identifier(prop, f"{where}.node_properties key")
        _strings(column, f"{where}.node_properties[{prop!r}]")
    match_on = raw.get("match_on")
    source = raw.get("source")
    return RelSpec(
        type=check_identifier(raw.get("type"), f"{where}.type"),
        node=check_identifier(raw.get("node"), f"{where}.node"),
        columns=columns,
        match_on=_strings(match_on, f"{where}.match_on") if match_on is not None else None,
        node_properties=node_properties,
        direction=direction,
        source=_parse_rel({"type": raw.get("type"), **source}, f"{where}.source")
        if source is not None
        else None,
    )


def _parse_table(name: str, raw: Any) -> TableSpec:
    where = f"tables.{name}"
    if not isinstance(raw, Mapping):
        raise TypeError(f"{where} must be a table (dict), got {type(raw).__name__}")
    unknown = set(raw) - {
        "node",
        "key",
        "properties",
        "relationships",
        "derived",
        "file",
        "missing",
    }
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    node = raw.get("node")
    if node is not None:
        check_identifier(node, f"{where}.node")
    key = raw.get("key")
    properties = dict(raw.get("properties") or {})
    for prop, kind in properties.items():
        check_identifier(prop, f"{where}.properties key")
        if prop in _RESERVED_PROPERTIES:
            raise ValueError(f"{where}.properties may not define {prop!r}: it is the node key")
        if kind not in PROPERTY_TYPES:
            raise ValueError(
                f"{where}.properties[{prop!r}] must be one of {PROPERTY_TYPES}, got {kind!r}"
            )
    rels = tuple(
        _parse_rel(item, f"{where}.relationships[{i}]")
        for i, item in enumerate(raw.get("relationships") or [])
    )
    derived = []
    for i, item in enumerate(raw.get("derived") or []):
        spot = f"{where}.derived[{i}]"
        if not isinstance(item, Mapping):
            raise TypeError(f"{spot} must be a table (dict), got {type(item).__name__}")
        if item.get("rule") not in DERIVED_RULES:
            raise ValueError(
                f"{spot}.rule must be one of {DERIVED_RULES}, got {item.get('rule')!r}"
            )
        compare = _strings(item.get("compare"), f"{spot}.compare")
        choose = _strings(item.get("choose"), f"{spot}.choose")
        if len(compare) != 2 or len(choose) != 2:
            raise ValueError(f"{spot}: 'compare' and 'choose' each need exactly two columns")
        derived.append(
            DerivedSpec(
                type=check_identifier(item.get("type"), f"{spot}.type"),
                node=check_identifier(item.get("node"), f"{spot}.node"),
                rule=item["rule"],
                compare=(compare[0], compare[1]),
                choose=(choose[0], choose[1]),
            )
        )
    if node is None:
        if properties or derived or key:
            raise ValueError(f"{where} has no 'node', so it cannot have key, properties or derived")
        if any(rel.source is None for rel in rels):
            raise ValueError(
                f"{where} has no 'node': each of its relationships needs a 'source' saying which "
                "referenced node the edge starts from"
            )
    missing = raw.get("missing", ["", "NA"])
    return TableSpec(
        name=name,
        node=node,
        key=_strings(key, f"{where}.key") if key is not None else None,
        properties=properties,
        relationships=rels,
        derived=tuple(derived),
        file=raw.get("file"),
        missing=tuple(str(value) for value in missing),
    )


def parse_mapping(raw: Mapping[str, Any]) -> dict[str, TableSpec]:
    """Validate a mapping dict (``{"tables": {name: spec}}``) into :class:`TableSpec` objects."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("tables"), Mapping):
        raise ValueError(
            "a graph mapping must be a dict with a 'tables' dict, e.g. "
            '{"tables": {"games": {"node": "Game", "key": "id"}}}'
        )
    if not raw["tables"]:
        raise ValueError("the mapping's 'tables' is empty; declare at least one table")
    # Top-level keys other than "tables" (e.g. "source") are free-form documentation.
    specs = {name: _parse_table(name, spec) for name, spec in raw["tables"].items()}
    labels_with_table = [spec.node for spec in specs.values() if spec.node is not None]
    duplicated = {label for label in labels_with_table if labels_with_table.count(label) > 1}
    if duplicated:
        raise ValueError(f"node labels {sorted(duplicated)} come from more than one table")
    return specs


def load_mapping(path: str | Path) -> dict[str, TableSpec]:
    """Read a mapping from a ``.json`` or ``.toml`` file (``file`` entries are relative to it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"schema file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(
            f"schema file {str(path)!r} is not valid {path.suffix[1:]}: {exc}"
        ) from exc
    return parse_mapping(raw)
