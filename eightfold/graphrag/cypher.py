"""Optional text-to-Cypher through an OpenAI-compatible LLM, behind read-only guards.

The LLM sees the graph schema and writes one Cypher query. Before anything reaches the database
the query is:

1. extracted from the reply (code fences, "Cypher:" prefixes and chat special tokens removed);
2. refused unless read-only: a keyword guard over the query with strings and comments removed and
   Unicode folded (so full-width or lower-case ``ｃｒｅａｔｅ`` is caught), which also refuses
   procedure calls, ``LOAD CSV`` and several statements. The database enforces the same thing
   independently (read-only database, ``GRAPH.RO_QUERY``, READ access mode);
3. checked against the schema: every label, relationship type, direction and property must exist;
4. given a ``LIMIT`` (one row more than kept, so truncation can be reported) and a timeout.

A query that fails a check or the database gets one repair round with the error; a write attempt
gets none. When the LLM path fails the caller falls back to the offline templates.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from typing import Any

from eightfold.graphrag.answers import ANSWERED, CANNOT_ANSWER, Answer
from eightfold.graphrag.questions import CannotAnswer
from eightfold.graphrag.schema import GraphSchema
from eightfold.graphrag.store import GraphStore, QueryError

logger = logging.getLogger(__name__)

__all__ = [
    "CypherRejected",
    "TextToCypher",
    "check_read_only",
    "check_schema",
    "extract_cypher",
    "impose_limit",
    "strip_comments",
]

WRITE_KEYWORDS = (
    "CREATE",
    "MERGE",
    "DELETE",
    "DETACH",
    "SET",
    "REMOVE",
    "DROP",
    "ALTER",
    "COPY",
    "LOAD",
    "CALL",
    "FOREACH",
    "INSTALL",
    "ATTACH",
    "IMPORT",
    "EXPORT",
    "CHECKPOINT",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "USE",
)
_SPECIAL_TOKENS = re.compile(r"<\|[a-z_]+\|>|</?s>|\[/?INST\]", re.IGNORECASE)
_FENCE = re.compile(r"```(?:cypher|sql|neo4j|graphql)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


class CypherRejected(ValueError):
    """A generated query failed a guard; ``write`` says whether it tried to change the graph."""

    def __init__(self, message: str, *, write: bool = False) -> None:
        super().__init__(message)
        self.write = write


_STRING_OR_COMMENT = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|//[^\n]*|/\*.*?(?:\*/|$)", re.DOTALL
)


def strip_comments(cypher: str) -> str:
    """``cypher`` without ``//`` and ``/* */`` comments; string literals are left alone.

    A comment can hide what follows it: a ``LIMIT`` appended after a trailing ``//`` comment
    would be part of the comment, so comments are removed before any check or rewrite.
    """

    def keep_strings(match: re.Match[str]) -> str:
        text = match.group(0)
        return text if text[0] in "'\"" else " "

    return _STRING_OR_COMMENT.sub(keep_strings, cypher)


def _without_literals(cypher: str) -> str:
    """``cypher`` with every string literal replaced by ``''`` and every comment by a space."""

    def blank(match: re.Match[str]) -> str:
        return "''" if match.group(0)[0] in "'\"" else " "

    return _STRING_OR_COMMENT.sub(blank, cypher)


def _masked(cypher: str) -> str:
    """``cypher`` upper-cased, string contents and comments blanked, with every index kept."""

    def blank(match: re.Match[str]) -> str:
        text = match.group(0)
        if text[0] in "'\"":
            return text[0] + "_" * (len(text) - 2) + text[-1]
        return " " * len(text)

    return _STRING_OR_COMMENT.sub(blank, cypher).upper()


def extract_cypher(reply: str) -> str:
    """The query inside an LLM reply: fences, prefixes, special tokens, comments and ``;``
    removed."""
    text = _SPECIAL_TOKENS.sub("", reply)
    fenced = _FENCE.findall(text)
    if fenced:
        text = fenced[0]
    text = text.strip()
    text = re.sub(r"^(?:cypher|query|answer)\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    text = strip_comments(text.strip("`")).strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise CypherRejected("the LLM reply holds no query")
    return text


def _skeleton(cypher: str) -> str:
    """The query folded to ASCII upper case with string literals and comments blanked."""
    folded = unicodedata.normalize("NFKC", cypher)
    folded = _without_literals(folded)
    return folded.upper()


def check_read_only(cypher: str) -> None:
    """Refuse anything but one read-only query.

    Raises
    ------
    CypherRejected
        With ``write=True`` for clauses that write, call procedures or load files, or for
        several statements.
    """
    skeleton = _skeleton(cypher)
    if ";" in skeleton:
        raise CypherRejected("only one statement is allowed (found ';')", write=True)
    words = set(re.findall(r"[A-Z_]+", skeleton))
    found = sorted(words & set(WRITE_KEYWORDS))
    if found:
        raise CypherRejected(
            f"the query is not read-only: it uses {', '.join(found)}; only MATCH ... RETURN "
            "queries are allowed",
            write=True,
        )
    if not re.search(r"\bRETURN\b", skeleton):
        raise CypherRejected("the query has no RETURN clause")


_NODE = re.compile(r"\(\s*([A-Za-z_]\w*)?\s*(?::\s*([A-Za-z_`][\w`]*))?\s*(\{[^}]*\})?\s*\)")
_REL = re.compile(
    r"\(\s*([A-Za-z_]\w*)?\s*(?::\s*([A-Za-z_]\w*))?[^()]*\)\s*(<)?-\s*\[\s*([A-Za-z_]\w*)?\s*"
    r"(?::\s*([A-Za-z_|:\s]+?))?\s*(?:\*[\d.]*)?\s*(\{[^}]*\})?\s*\]\s*-(>)?\s*"
    r"(?=\(\s*([A-Za-z_]\w*)?\s*(?::\s*([A-Za-z_]\w*))?)"
)


def check_schema(cypher: str, schema: GraphSchema) -> None:
    """Every label, relationship type, direction and property used must exist in the schema.

    Raises
    ------
    CypherRejected
        Naming what is unknown and what exists instead.
    """
    skeleton = _without_literals(cypher)
    variables: dict[str, str] = {}
    for var, label, props in _NODE.findall(skeleton):
        if not label:
            continue
        label = label.strip("`")
        if label not in schema.nodes:
            raise CypherRejected(
                f"unknown node label {label!r}; the labels are {sorted(schema.nodes)}"
            )
        if var:
            variables[var] = label
        for key in re.findall(r"([A-Za-z_]\w*)\s*:", props or ""):
            if schema.property_type(label, key) is None:
                raise CypherRejected(
                    f"label {label} has no property {key!r}; it has "
                    f"{['id', *schema.nodes[label].properties]}"
                )
    rel_vars: set[str] = set()
    for match in _REL.finditer(skeleton):
        src_var, src_label, back, rel_var, types, _, forward, dst_var, dst_label = match.groups()
        if rel_var:
            rel_vars.add(rel_var)
        src_label = src_label or variables.get(src_var or "")
        dst_label = dst_label or variables.get(dst_var or "")
        for kind in re.split(r"[|:\s]+", types or ""):
            if not kind:
                continue
            if kind not in schema.relationships:
                raise CypherRejected(
                    f"unknown relationship type {kind!r}; the types are "
                    f"{sorted(schema.relationships)}"
                )
            if not (src_label and dst_label) or (back and forward):
                continue
            start, end = (dst_label, src_label) if back else (src_label, dst_label)
            pairs = schema.relationships[kind].pairs
            if (start, end) not in pairs:
                if (end, start) in pairs:
                    raise CypherRejected(
                        f"relationship {kind} goes from {end} to {start}, not from {start} to "
                        f"{end}; reverse the arrow"
                    )
                raise CypherRejected(
                    f"relationship {kind} does not connect {start} to {end}; it connects "
                    + ", ".join(f"{a}->{b}" for a, b in pairs)
                )
    for var, prop in re.findall(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b", skeleton):
        label = variables.get(var)
        if label is not None and schema.property_type(label, prop) is None:
            raise CypherRejected(
                f"{var} is a {label}, which has no property {prop!r}; it has "
                f"{['id', *schema.nodes[label].properties]}"
            )


def impose_limit(cypher: str, limit: int) -> str:
    """Make the final RETURN keep at most ``limit`` rows (appending or lowering ``LIMIT``)."""
    cypher = strip_comments(cypher).rstrip()
    # Same length as the query, so positions found in it are positions in the query.
    skeleton = _masked(cypher)
    last_return = skeleton.rfind("RETURN")
    tail = skeleton[last_return:]
    match = re.search(r"\bLIMIT\s+(\d+|\$\w+)\s*$", tail)
    if match is None:
        return f"{cypher} LIMIT {limit}"
    value = match.group(1)
    if value.isdigit() and int(value) <= limit:
        return cypher
    start = last_return + match.start()
    return f"{cypher[:start].rstrip()} LIMIT {limit}"


PROMPT = """You translate questions about a soccer knowledge graph into one Cypher query.

{schema}

Rules:
- Write exactly one read-only query: MATCH / OPTIONAL MATCH / WITH / WHERE / RETURN / ORDER BY /
  LIMIT only. Never CREATE, MERGE, SET, DELETE, REMOVE, CALL or LOAD.
- Use only the labels, relationship types, directions and properties listed above.
- Dates are ISO strings 'YYYY-MM-DD'; compare them as strings.
- Give every returned column an alias with AS.
- Do the counting, summing and averaging in the query.
- Reply with the query only, no explanation.

Examples:
{examples}"""

EXAMPLES = [
    (
        "How many matches did Brazil win?",
        "MATCH (m:Match)-[:WINNER]->(t:Team {name: 'Brazil'}) RETURN count(m) AS wins",
    ),
    (
        "Who scored the most goals for France?",
        "MATCH (g:Goal)-[:SCORED_BY]->(p:Player {team: 'France'}) WHERE g.own_goal = false "
        "RETURN p.name AS player, count(g) AS goals ORDER BY goals DESC LIMIT 1",
    ),
]


class TextToCypher:
    """Questions to Cypher with an LLM, checked before they run.

    Parameters
    ----------
    llm
        An :class:`~eightfold.llm.LLMClient`.
    schema
        The graph schema given to the LLM and used to check its queries.
    max_rows
        Rows kept; the imposed ``LIMIT`` is one more so truncation shows.
    timeout_s
        Per-query timeout at the database.
    """

    def __init__(
        self, llm: Any, schema: GraphSchema, *, max_rows: int = 100, timeout_s: float = 10.0
    ) -> None:
        from eightfold.llm import LLMClient

        if not isinstance(llm, LLMClient):
            raise TypeError(f"llm must be an eightfold.llm.LLMClient, got {type(llm).__name__}")
        self.llm = llm
        self.schema = schema
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        examples = EXAMPLES if "Match" in schema.nodes and "Goal" in schema.nodes else []
        self.system = PROMPT.format(
            schema=schema.describe(),
            examples="\n".join(f"Q: {q}\nCypher: {c}" for q, c in examples) or "(none)",
        )

    def prepare(self, reply: str) -> str:
        """Extract and check a query from an LLM reply; return it with its LIMIT imposed."""
        cypher = extract_cypher(reply)
        check_read_only(cypher)
        check_schema(cypher, self.schema)
        return impose_limit(cypher, self.max_rows + 1)

    def answer(
        self, question: str, store: GraphStore, *, fallback: CannotAnswer | None = None
    ) -> Answer:
        """Ask the LLM for a query, check it, run it; on failure say why (never raises)."""
        from eightfold.llm import LLMError

        started = time.perf_counter()
        messages: list[dict[str, str]] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": question},
        ]
        attempts: list[str] = []
        cypher: str | None = None
        for attempt in range(2):
            try:
                reply = self.llm.chat(messages)
            except LLMError as exc:
                attempts.append(f"LLM unavailable: {exc}")
                break
            try:
                cypher = self.prepare(reply)
                result = store.run(cypher, {}, timeout_s=self.timeout_s)
            except CypherRejected as exc:
                attempts.append(f"rejected: {exc}")
                logger.warning("LLM query rejected (attempt %d): %s", attempt + 1, exc)
                if exc.write:
                    break  # a write attempt is not repaired
                error = str(exc)
            except (QueryError, ValueError) as exc:
                attempts.append(f"database error: {exc}")
                error = str(exc)
            else:
                rows = result.rows
                truncated = len(rows) > self.max_rows
                rows = rows[: self.max_rows]
                value: Any = rows[0][0] if len(rows) == 1 and len(rows[0]) == 1 else rows
                return Answer(
                    question,
                    ANSWERED,
                    _describe_rows(result.columns, rows, truncated),
                    value=value,
                    method="llm",
                    cypher=cypher,
                    columns=result.columns,
                    rows=rows,
                    truncated=truncated,
                    timings={"total_s": time.perf_counter() - started},
                )
            messages += [
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"That query failed: {error}\nReply with a corrected query only.",
                },
            ]
        reason = "; ".join(attempts)
        prefix = f"{fallback.reason}; " if fallback is not None else ""
        return Answer(
            question,
            CANNOT_ANSWER,
            f"Cannot answer: {prefix}the LLM path failed ({reason}).",
            method="llm",
            cypher=cypher,
            suggestions=fallback.suggestions if fallback is not None else [],
            timings={"total_s": time.perf_counter() - started},
        )


def _describe_rows(columns: list[str], rows: list[list[Any]], truncated: bool) -> str:
    if not rows:
        return "The query returned no rows."
    if len(rows) == 1 and len(columns) == 1:
        return f"{columns[0]}: {rows[0][0]}."
    shown = "; ".join(
        ", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True)) for row in rows[:10]
    )
    more = f" ({len(rows)} rows{', truncated' if truncated else ''})" if len(rows) > 10 else ""
    return f"{shown}{more}."
