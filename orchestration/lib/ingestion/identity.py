"""One name per node and per GPU, whichever exporter or log wrote it (docs/telemetry-faults.md, "Identity").

Nodes. Telemetry and request logs spell the same host differently: DCGM's `Hostname` is the node name,
node_exporter's and Triton's `instance` is the scrape target `host:port`, a router may log `GPU-NODE-00`. Every
node name, in telemetry and in requests, on files and on the Prometheus path, goes through the same rule:

1. trimmed and lower-cased (host names are case-insensitive, RFC 4343);
2. a trailing `:port` removed (`gpu-node-01:9400` -> `gpu-node-01`; `[fe80::1]:9100` -> `[fe80::1]`);
3. the cluster's `node_aliases` (clusters.yml: a mapping from a name, normalised by 1-2, to the node name), else
4. the cluster's `node_pattern` (clusters.yml: an RE2 regular expression; its first capture group, or the whole
   match when it has none, is the node name; a name it does not match is kept).

GPUs. DCGM labels each GPU with its index (`gpu`), its UUID and its PCI bus id together; an exporter upgrade or
another exporter may name the same GPU by one of the others only. Per cluster and (normalised) node, the names that
share a series are one GPU; its one name is its index when any series gives one, else its smallest UUID. The
labels as exported stay in raw.telemetry_series (node_label, gpu_label, gpu_uuid, pci_bus_id).

The rule is SQL built here (`node_name_sql`); user values (aliases, patterns, cluster ids) reach DuckDB as
parameters, never as SQL text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

PORT_RE = r"^(\[[^]]*\]|[^:]*):[0-9]+$"
# constructs Python's re accepts and DuckDB's RE2 does not
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")

NODE_MACROS: tuple[str, ...] = (
    # the cluster-independent part of the rule: trimmed, lower-cased, without a trailing :port (impact_trim: see
    # ingest.MACROS; one lower() and no regular expression for the usual name, which costs 0.03 us a row)
    f"""
    create or replace temp macro impact_node(s) as (
        nullif(lower(
            case when contains(s, ':') then regexp_replace(impact_trim(s), '{PORT_RE}', '\\1') else impact_trim(s) end
        ), '')
    )
    """,
)


def normalise_node(name: str | None) -> str | None:
    """Python twin of `impact_node` (for cluster aliases and tests): trimmed, lower-cased, :port removed."""
    if name is None or not str(name).strip():
        return None
    text = str(name).strip()
    match = re.fullmatch(r"(\[[^]]*\]|[^:]*):[0-9]+", text)
    return (match.group(1) if match else text).lower()


def node_config_problem(item: Mapping[str, object]) -> str | None:
    """Why a clusters.yml entry's node_pattern / node_aliases / gpu_max_w is unusable, or None."""
    pattern = item.get("node_pattern")
    if pattern not in (None, ""):
        if not isinstance(pattern, str):
            return f"node_pattern must be a regular expression (text), not {pattern!r}"
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            return f"node_pattern {pattern!r} is not a regular expression: {exc}"
        if _NOT_RE2.search(pattern):
            return f"node_pattern {pattern!r} uses look-around or back-references, which RE2 (DuckDB) lacks"
        if compiled.groups > 1:
            return f"node_pattern {pattern!r} has {compiled.groups} capture groups (at most one: the node name)"
    aliases = item.get("node_aliases")
    if aliases not in (None, {}) and (not isinstance(aliases, dict) or not all(
        isinstance(k, (str, int)) and isinstance(v, (str, int)) and str(v).strip() for k, v in aliases.items()
    )):
        return "node_aliases must map names to node names, e.g. {gpu-node-00.example.com: gpu-node-00}"
    gpu_max = item.get("gpu_max_w")
    if gpu_max is not None and (isinstance(gpu_max, bool) or not isinstance(gpu_max, (int, float)) or gpu_max <= 0):
        return f"gpu_max_w must be a positive number of watts, not {gpu_max!r}"
    return None


def aliases_json(aliases: object) -> str | None:
    """clusters.yml node_aliases as stored in raw.clusters: JSON of {normalised name: normalised node}."""
    if not isinstance(aliases, dict) or not aliases:
        return None
    return json.dumps({normalise_node(str(k)): normalise_node(str(v)) for k, v in aliases.items()}, sort_keys=True)


@dataclass(frozen=True)
class NodeRule:
    """One cluster's own naming rule (clusters.yml node_aliases and node_pattern)."""

    cluster: str
    pattern: str | None
    aliases: dict[str, str]


def node_rules(con: duckdb.DuckDBPyConnection) -> list[NodeRule]:
    """The clusters of raw.clusters that have a naming rule of their own."""
    rows = con.execute(
        "select cluster, node_pattern, node_aliases from raw.clusters "
        "where coalesce(node_pattern, '') <> '' or node_aliases is not null order by cluster"
    ).fetchall()
    return [NodeRule(c, p or None, json.loads(a) if a else {}) for c, p, a in rows]


def node_name_sql(node: str, cluster: str, rules: list[NodeRule], prefix: str = "node") -> tuple[str, dict]:
    """SQL (and its parameters) for the node name of the column expression `node` of cluster `cluster`."""
    base = f"impact_node({node})"
    if not rules:
        return base, {}
    params: dict[str, object] = {}
    branches = []
    for i, rule in enumerate(rules):
        p = f"{prefix}_{i}"
        params[f"{p}_cluster"] = rule.cluster
        terms = []
        if rule.aliases:
            params[f"{p}_keys"] = list(rule.aliases)
            params[f"{p}_values"] = list(rule.aliases.values())
            terms.append(f"${p}_values[list_position(${p}_keys, {base})]")
        if rule.pattern:
            params[f"{p}_pattern"] = rule.pattern
            group = 1 if re.compile(rule.pattern).groups else 0
            terms.append(f"nullif(lower(regexp_extract({base}, ${p}_pattern, {group})), '')")
        branches.append(f"when {cluster} = ${p}_cluster then coalesce({', '.join([*terms, base])})")
    return f"(case {' '.join(branches)} else {base} end)", params


def refresh_series_identity(con: duckdb.DuckDBPyConnection, rules: list[NodeRule]) -> None:
    """Recompute node, gpu and logical_key of every row of raw.telemetry_series from its labels (a few hundred rows:
    the rules or a newly seen series may have changed them). Rows written before these columns existed hold their
    labels in node and gpu: those become node_label and gpu_label first."""
    con.execute(
        "update raw.telemetry_series set node_label = node, gpu_label = gpu where node_label is null"
    )
    node_sql, params = node_name_sql("node_label", "cluster", rules)
    con.execute(f"update raw.telemetry_series set node = coalesce({node_sql}, node_label)", params)
    con.execute(
        """
        update raw.telemetry_series as s set gpu = c.gpu
        from (
            with recursive names as (
                -- every name each GPU series carries
                select distinct cluster, node, series_key, unnest(list_distinct(list_filter(
                    [gpu_label, gpu_uuid, pci_bus_id], lambda x: x is not null and x <> ''))) as name
                from raw.telemetry_series
                where gpu_label is not null
            ),
            links as (
                select distinct a.cluster, a.node, a.name as a, b.name as b
                from names as a inner join names as b on a.series_key = b.series_key
            ),
            reach (cluster, node, a, b) as (
                select cluster, node, a, b from links
                union
                select r.cluster, r.node, r.a, l.b
                from reach as r inner join links as l on r.cluster = l.cluster and r.node = l.node and r.b = l.a
            )
            -- the GPU's one name: its index when a series gives one, else its smallest other name
            select cluster, node, a as name,
                first(b order by not regexp_full_match(b, '[0-9]+'), length(b), b) as gpu
            from reach
            group by cluster, node, a
        ) as c
        where s.cluster = c.cluster and s.node = c.node and s.gpu_label = c.name
        """
    )
    con.execute("update raw.telemetry_series set logical_key = hash(cluster, node, gpu, cpu, mode, metric)")
