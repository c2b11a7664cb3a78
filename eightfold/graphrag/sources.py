"""Sources of typed rows, and the conversion of tables into graph data.

Every source yields named :class:`pandas.DataFrame` tables plus a mapping (see
:mod:`eightfold.graphrag.schema`); :func:`tables_to_graph` turns both into :class:`GraphData`, the
backend-neutral nodes and relationships a :class:`~eightfold.graphrag.store.GraphStore` loads.

Sources
-------
:class:`InternationalResults`
    Men's full international matches since 1872 with goal scorers and shootouts (public domain
    facts; a compressed copy ships with the package).
:class:`SoccerNetGames`
    The SoccerNet game list (league, season, date, teams, final score) from the SoccerNet JSON
    game lists a user points at.
:class:`StatsBombMatches`
    StatsBomb open-data event and lineup JSON files a user points at.
:class:`CsvTables`
    Any CSV tables described by a declarative schema file.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from eightfold.graphrag.schema import (
    GraphSchema,
    NodeType,
    RelSpec,
    RelType,
    TableSpec,
    load_mapping,
    parse_mapping,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CsvTables",
    "GraphData",
    "InternationalResults",
    "RelBatch",
    "SoccerNetGames",
    "Source",
    "StatsBombMatches",
    "read_csv_strict",
    "tables_to_graph",
]

KEY_SEPARATOR = " | "
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class RelBatch:
    """Edges of one relationship type between one pair of labels: columns ``from``, ``to``."""

    type: str
    from_label: str
    to_label: str
    edges: pd.DataFrame


@dataclass
class GraphData:
    """Nodes per label (a frame with ``id`` and the properties) and relationship batches."""

    schema: GraphSchema
    nodes: dict[str, pd.DataFrame]
    relationships: list[RelBatch]
    provenance: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of nodes per label and of edges per relationship type."""
        counts = {label: len(frame) for label, frame in self.nodes.items()}
        for batch in self.relationships:
            counts[batch.type] = counts.get(batch.type, 0) + len(batch.edges)
        return counts


class Source:
    """A data source: named tables plus the mapping that turns them into a graph."""

    name = "source"

    def tables(self) -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def mapping(self) -> dict[str, TableSpec]:
        raise NotImplementedError

    def load(self) -> GraphData:
        """Read the tables and convert them to :class:`GraphData`."""
        data = tables_to_graph(self.tables(), self.mapping())
        data.provenance["source"] = self.describe()
        return data

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


# --------------------------------------------------------------------------------------------
# tables -> graph


def read_csv_strict(path: str | Path, *, table: str | None = None) -> pd.DataFrame:
    """Read a CSV with every cell as a string, honouring quotes, with clear errors.

    Types are applied later from the schema, so nothing is guessed here ("Washington, D.C." in
    quotes stays one cell; "NA" stays a string until the schema says it means missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        name = f"table {table!r} " if table else ""
        raise ValueError(
            f"cannot read {name}from CSV {str(path)!r}: {exc}. Check the quoting and the number "
            "of fields per row"
        ) from exc
    return frame.astype(object)


def _cast(values: pd.Series, kind: str, table: str, column: str, missing: set[str]) -> list[Any]:
    """Cast string cells to a schema type; missing tokens become ``None``."""
    out: list[Any] = []
    for row, raw in enumerate(values.tolist()):
        text = "" if raw is None else str(raw).strip()
        if text in missing:
            out.append(None)
            continue
        try:
            if kind == "STRING":
                out.append(str(raw))
            elif kind == "INT64":
                number = float(text)
                if not number.is_integer():
                    raise ValueError
                out.append(int(number))
            elif kind == "DOUBLE":
                out.append(float(text))
            elif kind == "BOOL":
                lowered = text.lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError
                out.append(lowered in _TRUE)
            else:  # DATE: ISO strings compare correctly as text on every backend
                out.append(pd.Timestamp(text).strftime("%Y-%m-%d"))
        except (ValueError, TypeError):
            raise ValueError(
                f"table {table!r}, column {column!r}, row {row + 1}: {raw!r} is not a valid "
                f"{kind}; fix the value, list it under 'missing', or declare the column STRING"
            ) from None
    return out


def _joined(frame: pd.DataFrame, columns: Sequence[str], missing: set[str]) -> pd.Series:
    """Key strings from one or more columns; ``None`` where any part is missing."""
    parts = [
        frame[column].map(lambda v: None if str(v).strip() in missing else str(v))
        for column in columns
    ]
    joined = parts[0].copy()
    for part in parts[1:]:
        joined = joined.combine(
            part, lambda a, b: None if a is None or b is None else f"{a}{KEY_SEPARATOR}{b}"
        )
    return joined


def _check_columns(tables: Mapping[str, pd.DataFrame], specs: Mapping[str, TableSpec]) -> None:
    for name, spec in specs.items():
        if name not in tables:
            raise ValueError(
                f"the schema declares table {name!r} but the source has no such table; "
                f"available tables: {sorted(tables)}"
            )
        absent = sorted(spec.columns() - set(tables[name].columns))
        if absent:
            raise ValueError(
                f"the schema for table {name!r} names column(s) {absent} that the table does not "
                f"have; its columns are {list(tables[name].columns)}"
            )


def tables_to_graph(
    tables: Mapping[str, pd.DataFrame], specs: Mapping[str, TableSpec]
) -> GraphData:
    """Convert named tables into graph data following their mapping.

    Parameters
    ----------
    tables
        Table name to frame (cells as strings or already typed values).
    specs
        The parsed mapping (:func:`~eightfold.graphrag.schema.parse_mapping`).

    Returns
    -------
    GraphData
        Nodes deduplicated by ``id``; edges deduplicated per (type, from, to). Foreign keys that
        point at a missing row of another table are dropped and counted in
        ``provenance["dangling"]``.

    Raises
    ------
    ValueError
        A declared table or column is missing, a key is duplicated, or a cell cannot be cast.
    """
    _check_columns(tables, specs)
    node_frames: dict[str, pd.DataFrame] = {}
    node_types: dict[str, NodeType] = {}
    lookups: dict[str, dict[tuple[str, ...], dict[str, str]]] = {}
    table_of_label = {spec.node: spec for spec in specs.values() if spec.node is not None}

    # 1. table-backed nodes: one per row, keyed by the key columns or the row number.
    row_ids: dict[str, pd.Series] = {}
    for name, spec in specs.items():
        frame = tables[name]
        if spec.node is None:
            continue
        missing = set(spec.missing)
        if spec.key:
            ids = _joined(frame, spec.key, missing)
            if ids.isna().any():
                row = int(ids.isna().to_numpy().argmax()) + 1
                raise ValueError(
                    f"table {name!r}, row {row}: a key column {list(spec.key)} is empty; every "
                    "row needs a key"
                )
            duplicated = ids[ids.duplicated()]
            if len(duplicated):
                raise ValueError(
                    f"table {name!r} has {len(duplicated)} duplicated key(s) over "
                    f"{list(spec.key)}, e.g. {duplicated.iloc[0]!r}; choose key columns that are "
                    "unique or drop 'key' to identify rows by number"
                )
        else:
            ids = pd.Series([f"{name}:{i}" for i in range(len(frame))], index=frame.index)
        row_ids[name] = ids
        columns: dict[str, Any] = {"id": ids.tolist()}
        for prop, kind in spec.properties.items():
            columns[prop] = _cast(frame[prop], kind, name, prop, missing)
        node_frames[spec.node] = pd.DataFrame(columns, dtype=object)
        node_types[spec.node] = NodeType(spec.node, dict(spec.properties))
        lookups[spec.node] = {}

    def resolve(rel: RelSpec, frame: pd.DataFrame, spec: TableSpec) -> pd.Series:
        """Target node ids of a foreign key, creating implicit nodes on the way."""
        missing = set(spec.missing)
        values = _joined(frame, rel.columns, missing)
        target = table_of_label.get(rel.node)
        if target is not None:
            on = rel.match_on or target.key
            if on is None:
                raise ValueError(
                    f"table {spec.name!r}: relationship {rel.type} points at {rel.node}, whose "
                    f"table {target.name!r} has no key; add 'match_on' naming its columns"
                )
            if len(on) != len(rel.columns):
                raise ValueError(
                    f"table {spec.name!r}: relationship {rel.type} uses {len(rel.columns)} "
                    f"column(s) to point at {rel.node}, which is matched on {len(on)} ({list(on)})"
                )
            table = lookups[rel.node].get(tuple(on))
            if table is None:
                keys = _joined(tables[target.name], on, set(target.missing))
                table = {}
                for key, node_id in zip(keys.tolist(), row_ids[target.name].tolist(), strict=True):
                    # Several rows may share the match columns (two games on one day): the
                    # first one wins, as a join on those columns would pick it first.
                    if key is not None and key not in table:
                        table[key] = node_id
                lookups[rel.node][tuple(on)] = table
            return values.map(lambda v: table.get(v) if v is not None else None)
        # Implicit node: the values themselves are the identity.
        props = rel.node_properties or {"name": rel.columns[0] if len(rel.columns) == 1 else ""}
        new: dict[str, list[Any]] = {"id": []}
        for prop in props:
            new[prop] = []
        present = values.notna()
        sub = frame[present.to_numpy()]
        new["id"] = values[present].tolist()
        for prop, column in props.items():
            new[prop] = sub[column].tolist() if column else values[present].tolist()
        found = pd.DataFrame(new, dtype=object)
        previous = node_frames.get(rel.node)
        merged = found if previous is None else pd.concat([previous, found], ignore_index=True)
        node_frames[rel.node] = merged.drop_duplicates("id", ignore_index=True)
        known = node_types.get(rel.node, NodeType(rel.node, {}))
        node_types[rel.node] = NodeType(
            rel.node, {**known.properties, **{prop: "STRING" for prop in props}}
        )
        return values

    batches: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
    dangling: dict[str, int] = {}

    def add(kind: str, src_label: str, dst_label: str, src: pd.Series, dst: pd.Series) -> None:
        edges = pd.DataFrame({"from": src.tolist(), "to": dst.tolist()}, dtype=object)
        batches.setdefault((kind, src_label, dst_label), []).append(edges.dropna())

    # 2. foreign keys and derived relationships.
    for name, spec in specs.items():
        frame = tables[name]
        for rel in spec.relationships:
            if rel.source is not None:
                src_label, src_ids = rel.source.node, resolve(rel.source, frame, spec)
            else:
                assert spec.node is not None  # checked by parse_mapping
                src_label, src_ids = spec.node, row_ids[name]
            dst_ids = resolve(rel, frame, spec)
            if rel.node in table_of_label:
                wanted = _joined(frame, rel.columns, set(spec.missing)).notna()
                lost = int((wanted & dst_ids.isna()).sum())
                if lost:
                    dangling[f"{name}.{rel.type}"] = lost
                    logger.warning(
                        "table %r: %d %s reference(s) match no %s row and were dropped",
                        name,
                        lost,
                        rel.type,
                        rel.node,
                    )
            if rel.direction == "out":
                add(rel.type, src_label, rel.node, src_ids, dst_ids)
            else:
                add(rel.type, rel.node, src_label, dst_ids, src_ids)
        for derived in spec.derived:
            assert spec.node is not None
            missing = set(spec.missing)
            left = _cast(frame[derived.compare[0]], "DOUBLE", name, derived.compare[0], missing)
            right = _cast(frame[derived.compare[1]], "DOUBLE", name, derived.compare[1], missing)
            first = _joined(frame, [derived.choose[0]], missing).tolist()
            second = _joined(frame, [derived.choose[1]], missing).tolist()
            chosen: list[str | None] = []
            for a, b, x, y in zip(left, right, first, second, strict=True):
                if a is None or b is None or a == b:
                    chosen.append(x if derived.rule == "equal" and a is not None else None)
                elif derived.rule == "equal":
                    chosen.append(None)
                else:
                    chosen.append(x if (a > b) == (derived.rule == "greater") else y)
            targets = resolve(
                RelSpec(type=derived.type, node=derived.node, columns=(derived.choose[0],)),
                pd.DataFrame({derived.choose[0]: [c if c is not None else "" for c in chosen]}),
                TableSpec(name, None, None, {}, (), (), missing=("",)),
            )
            add(derived.type, spec.node, derived.node, row_ids[name], targets)

    relationships = []
    pairs: dict[str, list[tuple[str, str]]] = {}
    for (kind, src, dst), frames in batches.items():
        edges = pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
        relationships.append(RelBatch(kind, src, dst, edges))
        pairs.setdefault(kind, []).append((src, dst))
    schema = GraphSchema(
        nodes=node_types,
        relationships={kind: RelType(kind, tuple(p)) for kind, p in pairs.items()},
    )
    provenance = {"tables": {name: len(tables[name]) for name in specs}, "dangling": dangling}
    return GraphData(schema, node_frames, relationships, provenance)


# --------------------------------------------------------------------------------------------
# concrete sources


def _packaged(name: str) -> Any:
    return resources.files("eightfold.graphrag").joinpath("data", name)


@functools.lru_cache(maxsize=8)
def _packaged_csv(name: str) -> pd.DataFrame:
    with _packaged(name).open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        frame = pd.read_csv(text, dtype=str, keep_default_na=False, na_filter=False)
    return frame.astype(object)


def _read_packaged_csv(name: str) -> pd.DataFrame:
    # Decompressing the shipped copy takes a second or two; keep it, hand out copies.
    return _packaged_csv(name).copy()


INTERNATIONAL_FILES = ("results", "goalscorers", "shootouts")


class InternationalResults(Source):
    """Men's full international football results since 1872, with scorers and shootouts.

    Parameters
    ----------
    path
        A folder with ``results.csv``, ``goalscorers.csv`` and ``shootouts.csv``; ``None`` uses
        the compressed copy shipped with eightfold.
    since, until
        Keep only matches with ``since <= date <= until`` (ISO dates, inclusive), e.g. a small
        slice for tests.

    Notes
    -----
    The facts are public domain (CC0) and come from the "international football results"
    data set; matches are identified by row, since two matches can share date and teams, and
    goals attach to the first match with their date and teams.
    """

    name = "international"

    def __init__(
        self, path: str | Path | None = None, *, since: str | None = None, until: str | None = None
    ) -> None:
        self.path = Path(path) if path is not None else None
        for label, value in (("since", since), ("until", until)):
            if value is not None and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", str(value)):
                raise ValueError(f"{label} must be an ISO date like 2018-01-01, got {value!r}")
        self.since, self.until = since, until
        if self.path is not None and not self.path.is_dir():
            raise NotADirectoryError(
                f"path {str(self.path)!r} is not a folder with results.csv, goalscorers.csv and "
                "shootouts.csv; pass such a folder or omit it to use the shipped copy"
            )

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {}
        for name in INTERNATIONAL_FILES:
            if self.path is None:
                frame = _read_packaged_csv(f"{name}.csv.gz")
            else:
                frame = read_csv_strict(self.path / f"{name}.csv", table=name)
            keep = pd.Series(True, index=frame.index)
            # ISO dates compare correctly as strings; a bare year "2018" sorts before "2018-..."
            if self.since:
                keep &= frame["date"] >= self.since
            if self.until:
                keep &= frame["date"] <= self.until + ("-99" if len(self.until) < 10 else "")
            tables[name] = frame[keep].reset_index(drop=True)
        return tables

    def mapping(self) -> dict[str, TableSpec]:
        with _packaged("international.json").open("r", encoding="utf-8") as handle:
            return parse_mapping(json.load(handle))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else "shipped copy",
            "since": self.since,
            "until": self.until,
        }


# "2015-02-21 - 18-00 Chelsea 1 - 1 Burnley" (the score is absent in some challenge games)
_SOCCERNET_GAME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2}) - (?P<kickoff>\d{2}-\d{2}) "
    r"(?:(?P<home>.+?) (?P<hg>\d+) - (?P<ag>\d+) (?P<away>.+)|(?P<home2>.+?) - (?P<away2>.+))$"
)

SOCCERNET_MAPPING: dict[str, Any] = {
    "tables": {
        "games": {
            "node": "Game",
            "key": "path",
            "properties": {
                "date": "DATE",
                "kickoff": "STRING",
                "home_goals": "INT64",
                "away_goals": "INT64",
                "split": "STRING",
            },
            "relationships": [
                {"type": "HOME_TEAM", "column": "home_team", "node": "Team"},
                {"type": "AWAY_TEAM", "column": "away_team", "node": "Team"},
                {
                    "type": "PARTICIPATED_IN",
                    "column": "home_team",
                    "node": "Team",
                    "direction": "in",
                },
                {
                    "type": "PARTICIPATED_IN",
                    "column": "away_team",
                    "node": "Team",
                    "direction": "in",
                },
                {"type": "IN_LEAGUE", "column": "league", "node": "League"},
                {"type": "IN_SEASON", "column": "season", "node": "Season"},
            ],
            "derived": [
                {
                    "type": "WINNER",
                    "node": "Team",
                    "rule": "greater",
                    "compare": ["home_goals", "away_goals"],
                    "choose": ["home_team", "away_team"],
                },
                {
                    "type": "LOSER",
                    "node": "Team",
                    "rule": "less",
                    "compare": ["home_goals", "away_goals"],
                    "choose": ["home_team", "away_team"],
                },
            ],
        }
    }
}


class SoccerNetGames(Source):
    """The SoccerNet game list: league, season, date, kickoff, teams and final score.

    Parameters
    ----------
    paths
        SoccerNet game-list JSON files (``{league: {season: ["2015-02-21 - 18-00 Chelsea 1 - 1
        Burnley", ...]}}``, as in the SoccerNet package's ``SoccerNetGames*.json``) or folders
        holding them. The split is taken from the file name (``...Train.json`` -> ``train``).
    """

    name = "soccernet"

    def __init__(self, paths: str | Path | Iterable[str | Path]) -> None:
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        files: list[Path] = []
        for item in items:
            item = Path(item)
            if item.is_dir():
                files += sorted(item.glob("SoccerNetGames*.json"))
            elif item.is_file():
                files.append(item)
            else:
                raise FileNotFoundError(f"SoccerNet game list {str(item)!r} does not exist")
        if not files:
            raise ValueError(
                f"no SoccerNet game-list JSON found in {[str(p) for p in items]}; expected files "
                "named like SoccerNetGamesTrain.json"
            )
        self.files = files

    def tables(self) -> dict[str, pd.DataFrame]:
        rows = []
        for path in self.files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"SoccerNet game list {str(path)!r} is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ValueError(
                    f"SoccerNet game list {str(path)!r} must map league -> season -> game names"
                )
            split = path.stem.removeprefix("SoccerNetGames").lower() or "unknown"
            for league, seasons in data.items():
                for season, games in dict(seasons).items():
                    for game in games:
                        match = _SOCCERNET_GAME.match(str(game))
                        if match is None:
                            raise ValueError(
                                f"{str(path)!r}: game name {game!r} is not 'YYYY-MM-DD - HH-MM "
                                "Home S - S Away'"
                            )
                        home = match["home"] or match["home2"]
                        away = match["away"] or match["away2"]
                        rows.append(
                            {
                                "path": f"{league}/{season}/{game}",
                                "league": league,
                                "season": season,
                                "date": match["date"],
                                "kickoff": match["kickoff"].replace("-", ":"),
                                "home_team": home.strip(),
                                "away_team": away.strip(),
                                "home_goals": match["hg"] or "",
                                "away_goals": match["ag"] or "",
                                "split": split,
                            }
                        )
        columns = ["path", "league", "season", "date", "kickoff", "home_team", "away_team"]
        columns += ["home_goals", "away_goals", "split"]
        return {"games": pd.DataFrame(rows, columns=columns, dtype=object)}

    def mapping(self) -> dict[str, TableSpec]:
        return parse_mapping(SOCCERNET_MAPPING)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "files": [str(p) for p in self.files]}


STATSBOMB_MAPPING: dict[str, Any] = {
    "tables": {
        "events": {
            "node": "Event",
            "key": "id",
            "properties": {
                "type": "STRING",
                "period": "INT64",
                "minute": "INT64",
                "second": "INT64",
                "outcome": "STRING",
            },
            "relationships": [
                {"type": "IN_MATCH", "column": "match_id", "node": "Match"},
                {
                    "type": "BY_TEAM",
                    "column": "team",
                    "node": "Team",
                },
                {
                    "type": "BY_PLAYER",
                    "columns": ["player_id"],
                    "node": "Player",
                    "match_on": ["player_id"],
                },
            ],
        },
        "lineups": {
            "node": "Player",
            "key": "player_id",
            "properties": {"name": "STRING", "jersey_number": "INT64", "country": "STRING"},
            "relationships": [{"type": "PLAYS_FOR", "column": "team", "node": "Team"}],
        },
        "appearances": {
            "relationships": [
                {
                    "type": "PLAYED_IN",
                    "column": "match_id",
                    "node": "Match",
                    "source": {"column": "player_id", "node": "Player"},
                }
            ]
        },
    }
}


class StatsBombMatches(Source):
    """StatsBomb open-data events and lineups for one or more matches.

    Parameters
    ----------
    events
        Event JSON files (a list of events per match, named ``<match_id>.json``).
    lineups
        Lineup JSON files with the same names (a list of teams with their ``lineup`` players).

    Notes
    -----
    Each event keeps its type (``Shot``, ``Pass``, ``Foul Committed``...), period, minute,
    second, and the outcome of shots, passes and duels when present; a goal is a ``Shot`` whose
    outcome is ``Goal`` (own goals are their own event type, as in StatsBomb's data).
    """

    name = "statsbomb"

    def __init__(self, events: Sequence[str | Path], lineups: Sequence[str | Path]) -> None:
        self.events = [Path(p) for p in events]
        self.lineups = [Path(p) for p in lineups]
        if not self.events:
            raise ValueError("events is empty; pass at least one StatsBomb event JSON file")
        for path in [*self.events, *self.lineups]:
            if not path.is_file():
                raise FileNotFoundError(f"StatsBomb file {str(path)!r} does not exist")

    @staticmethod
    def _load(path: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"StatsBomb file {str(path)!r} is not JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ValueError(f"StatsBomb file {str(path)!r} must hold a JSON list")
        return data

    def tables(self) -> dict[str, pd.DataFrame]:
        events, players, appearances = [], {}, []
        for path in self.events:
            match_id = path.stem
            for event in self._load(path):
                kind = (event.get("type") or {}).get("name", "")
                detail = event.get(kind.lower().replace(" ", "_")) or {}
                outcome = (
                    (detail.get("outcome") or {}).get("name", "")
                    if isinstance(detail, dict)
                    else ""
                )
                player = event.get("player") or {}
                events.append(
                    {
                        "id": str(event.get("id")),
                        "match_id": match_id,
                        "type": kind,
                        "period": str(event.get("period", "")),
                        "minute": str(event.get("minute", "")),
                        "second": str(event.get("second", "")),
                        "outcome": outcome,
                        "team": (event.get("team") or {}).get("name", ""),
                        "player_id": str(player.get("id", "")),
                    }
                )
        for path in self.lineups:
            match_id = path.stem
            for team in self._load(path):
                for player in team.get("lineup", []):
                    pid = str(player.get("player_id"))
                    players[pid] = {
                        "player_id": pid,
                        "name": player.get("player_name", ""),
                        "jersey_number": str(player.get("jersey_number", "")),
                        "country": (player.get("country") or {}).get("name", ""),
                        "team": team.get("team_name", ""),
                    }
                    appearances.append({"player_id": pid, "match_id": match_id})
        return {
            "events": pd.DataFrame(events, dtype=object),
            "lineups": pd.DataFrame(
                list(players.values()),
                columns=["player_id", "name", "jersey_number", "country", "team"],
                dtype=object,
            ),
            "appearances": pd.DataFrame(
                appearances, columns=["player_id", "match_id"], dtype=object
            ),
        }

    def mapping(self) -> dict[str, TableSpec]:
        return parse_mapping(STATSBOMB_MAPPING)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "events": [str(p) for p in self.events]}


class CsvTables(Source):
    """CSV tables described by a schema file (JSON or TOML; see :mod:`~eightfold.graphrag.schema`).

    Each table in the schema names its ``file``, relative to the schema file unless absolute.
    """

    name = "csv"

    def __init__(self, schema_file: str | Path) -> None:
        self.schema_file = Path(schema_file)
        self._specs = load_mapping(self.schema_file)
        for name, spec in self._specs.items():
            if not spec.file:
                raise ValueError(
                    f"table {name!r} in {str(self.schema_file)!r} has no 'file'; give the CSV "
                    "path (relative to the schema file)"
                )

    def tables(self) -> dict[str, pd.DataFrame]:
        base = self.schema_file.parent
        return {
            name: read_csv_strict(base / str(spec.file), table=name)
            for name, spec in self._specs.items()
        }

    def mapping(self) -> dict[str, TableSpec]:
        return self._specs

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "schema_file": str(self.schema_file)}
