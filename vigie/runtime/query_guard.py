"""What the warehouse server lets a client run, decided on the engine's own parse tree.

chDB is ClickHouse in local mode: no users, and its table functions reach the whole
file system and the network (``file('…/pseudonym.key', 'RawBLOB')`` reads the HMAC key).
Regexes over SQL text can be bypassed (comments, quoting, nesting), so the server never
inspects the client's text itself. It asks the engine:

1. ``formatQuery`` parses the text as *one* statement (the parser refuses
   multi-statements) and prints its canonical form;
2. ``EXPLAIN AST`` of that canonical form gives the parse tree, checked here;
3. the canonical form, and nothing else, is what runs: what was checked is what executes.

The rules (``check``): a closed list of statement kinds (reads only over GET, as
ClickHouse's HTTP ``readonly``); table functions and table engines from a closed list of
ones that stay inside the store; no function that reaches a file or the network, in any
position; no ``SETTINGS``/``SET`` (settings can turn on introspection, dynamic disks or
schema files), a MergeTree table's granule and merge block sizes alone excepted
(``TABLE_SETTINGS``); no line break inside a name or a literal (``EXPLAIN AST`` prints names
raw, so one would add a node line of the client's choosing to the tree); no dictionaries,
``INTO OUTFILE`` or ``FROM INFILE``. Selects also run with ``readonly = 1``, which the engine
enforces itself as a second layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sinks.migrate import REBUILD_SETTINGS


class QueryRefused(ValueError):
    """The query is outside what the warehouse server runs (``Code: 164`` READONLY or
    ``Code: 497`` ACCESS_DENIED)."""

    def __init__(self, message: str, code: int = 497) -> None:
        super().__init__(message)
        self.code = code


# Statement kinds (the root of EXPLAIN AST) a GET may run: reading only.
READ_KINDS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "ShowTables", "DescribeQuery",
    "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsViewQuery", "ExistsDictionaryQuery",
    "ShowCreateTableQuery", "ShowCreateViewQuery", "ShowCreateDatabaseQuery", "Explain",
})  # fmt: skip
# A POST may also write: what migrations, the sinks and a maintainer need, nothing else.
WRITE_KINDS = READ_KINDS | frozenset({
    "InsertQuery", "CreateQuery", "AlterQuery", "DropQuery", "Rename", "TruncateQuery",
    "OptimizeQuery", "DeleteQuery", "CheckQuery", "UseQuery",
})  # fmt: skip
# Table functions that stay inside the engine (everything else is refused).
TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "null", "generaterandom",
    "generate_series", "generateseries", "view",
})  # fmt: skip
# Table and database engines that keep their data in the store.
ENGINES = frozenset({
    "mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree",
    "collapsingmergetree", "versionedcollapsingmergetree", "graphitemergetree",
    "coalescingmergetree", "memory", "null", "log", "tinylog", "stripelog", "set", "join",
    "atomic",
})  # fmt: skip
# Functions (table, scalar or engine, any letter case) that read or write outside the
# store, refused wherever they appear; the allow-lists above catch what this misses.
OUTSIDE = frozenset({
    "file", "filecluster", "url", "urlcluster", "s3", "s3cluster", "gcs", "cosn", "oss",
    "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql",
    "mongodb", "redis", "sqlite", "jdbc", "odbc", "hdfs", "hdfscluster", "azureblobstorage",
    "azureblobstoragecluster", "executable", "executablepool", "input", "python", "dictionary",
    "iceberg", "icebergs3", "icebergazure", "iceberghdfs", "icebergcluster", "deltalake",
    "hudi", "kafka", "rabbitmq", "nats", "filelog", "distributed", "merge", "loop",
    "catboostevaluate", "arrowflight", "materializedpostgresql", "materializedmysql",
    "externaldistributed", "disk", "ytsaurus", "timeseries", "prometheusquery", "buffer",
})  # fmt: skip
# Parents under which a Function node names a table function.
_TABLE_FUNCTION_PARENTS = frozenset({"TableExpression", "InsertQuery", "CreateQuery", "BackupQuery"})
_LINE = re.compile(r"^(?P<indent> *)(?P<kind>[A-Za-z_]+(?: definition)?)(?:\s+(?P<name>[^\s(]+))?")
# In the canonical text these clauses are printed exactly so (keywords upper case, one space);
# a match inside a string literal only refuses a harmless query.
_FILE_CLAUSES = re.compile(r"\bINTO\s+OUTFILE\b|\bFROM\s+INFILE\b", re.IGNORECASE)
# The one SETTINGS clause a client may send: a MergeTree table's granule and merge block sizes,
# as the migrations set them (0011), integers only, every SETTINGS of the canonical text made of
# them alone.
TABLE_SETTINGS = REBUILD_SETTINGS
_SETTINGS_CLAUSE = re.compile(r"SETTINGS (\w+ = \d+(?:, \w+ = \d+)*)(?=\n|$)")
_TRAILING_FORMAT = re.compile(r"\n?\s*FORMAT\s+(\w+)\s*$", re.IGNORECASE)


@dataclass
class Node:
    """One node of an EXPLAIN AST tree."""

    kind: str
    name: str
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


def parse_ast(text: str) -> Node:
    """The tree of ``EXPLAIN AST`` output (one node a line, depth = indentation)."""
    root: Node | None = None
    stack: list[tuple[int, Node]] = []
    # Only "\n" ends a node: splitlines() also breaks on \v, \f, \x1c–\x1e, \x85, U+2028/9,
    # which a quoted name may hold and EXPLAIN AST prints raw.
    for line in text.split("\n"):
        match = _LINE.match(line)
        if match is None or not line.strip():
            continue
        depth = len(match["indent"])
        node = Node(match["kind"], match["name"] or "")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            node.parent = stack[-1][1]
            node.parent.children.append(node)
        elif root is None:
            root = node
        else:
            raise QueryRefused("one statement per request")
        stack.append((depth, node))
    if root is None:
        raise QueryRefused("empty query", code=62)
    return root


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out += _walk(child)
    return out


def check(tree: Node, canonical: str, read_only: bool) -> None:
    """Raise ``QueryRefused`` unless this statement may run (see the module's rules)."""
    if "\\n" in canonical:
        # EXPLAIN AST prints names raw: a line break in a quoted name (`c\n Storage definition`)
        # would add a node line of the client's choosing to the tree checked here. The
        # canonical text writes that break as \n; Vigie's statements never hold one.
        raise QueryRefused("a line break inside a name or a literal is not accepted", code=62)
    allowed = READ_KINDS if read_only else WRITE_KINDS
    if tree.kind not in allowed:
        if read_only and tree.kind in WRITE_KINDS:
            raise QueryRefused(
                f"{tree.kind} in a read-only request (GET, or readonly=1): send writes with POST", code=164
            )
        raise QueryRefused(f"{tree.kind} is not accepted by the warehouse server")
    if _FILE_CLAUSES.search(canonical):
        raise QueryRefused("INTO OUTFILE / FROM INFILE are not accepted (no file access)")
    for node in _walk(tree):
        name = node.name.lower()
        if node.kind == "Set":
            table_settings = node.parent is not None and node.parent.kind == "Storage definition"
            if not (table_settings and _table_settings_only(canonical)):
                raise QueryRefused("SETTINGS are not accepted by the warehouse server")
        if node.kind in ("Dictionary definition", "FunctionWithKeyValueArguments"):
            raise QueryRefused("dictionaries are not accepted (their sources reach files and the network)")
        if node.kind != "Function":
            continue
        if name in OUTSIDE:
            raise QueryRefused(f"{node.name}() reaches outside the warehouse and is refused")
        parent = node.parent.kind if node.parent else ""
        if parent in _TABLE_FUNCTION_PARENTS and name not in TABLE_FUNCTIONS:
            raise QueryRefused(f"table function {node.name}() is not accepted")
        # The engine is the first child of a storage definition (ASTStorage's order).
        first = node.parent is not None and node.parent.children[0] is node
        if parent == "Storage definition" and first and name not in ENGINES:
            raise QueryRefused(f"engine {node.name} is not accepted (data stays in the store)")


def _table_settings_only(canonical: str) -> bool:
    """True when every ``SETTINGS`` of the statement lists ``TABLE_SETTINGS`` set to integers
    (a word « SETTINGS » in a literal only refuses a harmless statement)."""
    starts = [m.start() for m in re.finditer(r"\bSETTINGS\b", canonical)]
    for start in starts:
        clause = _SETTINGS_CLAUSE.match(canonical, start)
        if clause is None or not set(re.findall(r"(\w+) = \d+", clause[1])) <= TABLE_SETTINGS:
            return False
    return bool(starts)


def split_format(canonical: str) -> tuple[str, str | None]:
    """The canonical statement without its trailing ``FORMAT x`` clause, and x."""
    match = _TRAILING_FORMAT.search(canonical.rstrip())
    if match is None:
        return canonical.rstrip(), None
    return canonical.rstrip()[: match.start()], match[1]
