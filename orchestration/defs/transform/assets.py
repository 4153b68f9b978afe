"""dbt models (staging -> intermediate -> marts) as Dagster assets keyed [schema, table], one run per day."""


import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.dbt_manifest import claim_target_path, wait_for_parse
from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.resources import DBT_PROJECT, ImpactSettings
from orchestration.lib import engines, preload
from orchestration.lib.operations import parts, retention
from orchestration.lib.warehouse import connect, fetch_one, quote_ident

LAYER_OWNERS = {
    "staging": ["team:platform"],
    "intermediate": ["team:platform"],
    "marts": ["team:sustainability"],
}


class ImpactDbtTranslator(DagsterDbtTranslator):
    """Models are keyed by their warehouse address [schema, table] and grouped by layer; sources keep the default
    [source, table] key, which is the key of the raw asset that loads them, so lineage joins without glue."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") != "model":
            return spec
        schema = props["schema"]
        return spec.replace_attributes(
            key=dg.AssetKey([schema, props.get("alias") or props["name"]]),
            group_name=schema,
            owners=LAYER_OWNERS.get(schema, []),
            kinds={"dbt", engines.engine_name()},
        )


PARTITION_DAY_ENV = "IMPACT_PARTITION_DAY"


def dbt_build_args(config_vars: Mapping[str, object]) -> list[str]:
    """The dbt CLI arguments of one partition's build. dbt unit tests check SQL logic, not data: they run in the
    test suite (`make test`), not in every daily build."""
    args = ["build", "--exclude-resource-type", "unit_test"]
    if config_vars:
        args += ["--vars", json.dumps(dict(config_vars), sort_keys=True)]
    return args


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    partitions_def=DAILY_PARTITIONS,
    dagster_dbt_translator=ImpactDbtTranslator(),
    name="impact_dbt_models",
    backfill_policy=DAILY_BACKFILL_POLICY,
)
def impact_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: ImpactSettings):
    """Power per window, concurrency, energy per request-second and per-request attribution (METHODOLOGY 2-3)."""
    # dbt inherits this process's environment; runs are sequential (one DuckDB writer), so setting it is safe.
    os.environ[PARTITION_DAY_ENV] = context.partition_key
    refuse_retired_day(context, settings)
    if settings.is_spark:
        publish_raw_layer(context, settings)
    args = dbt_build_args(settings.dbt_vars())
    target = claim_target_path(settings.warehouse_path)
    wait_for_parse(target)  # `impact run` may have started parsing a new warehouse's folder
    invocation = dbt.cli(args, context=context, target_path=target)
    preload.start()  # this process mostly waits on dbt from here: load the models job's libraries meanwhile
    yield from invocation.stream()
    # Row counts of the day, once dbt has released the warehouse (DuckDB allows one writing process, so
    # dagster-dbt's fetch_row_counts cannot read it while dbt runs): observations the UI plots over time.
    yield from partition_row_counts(context, settings)


def publish_raw_layer(context: dg.AssetExecutionContext, settings: ImpactSettings) -> None:
    """The Spark engine reads the day's raw rows (validated and loaded by the raw assets into ingestion's DuckDB
    store) as Parquet tables: write the day's partitions and the small tables (orchestration/lib/engines/lake.py)."""
    from orchestration.lib.engines import lake

    day = dt.date.fromisoformat(context.partition_key)
    with settings.open_engine() as engine:
        con = connect(settings.warehouse_path, read_only=True)
        try:
            written = lake.publish_day(con, engine, settings.lake_path, day)
        finally:
            con.close()
    context.log.info(
        f"raw layer for Spark at {settings.lake_path}: " + ", ".join(f"{t} {n:,}" for t, n in written.items())
    )


def refuse_retired_day(context: dg.AssetExecutionContext, settings: ImpactSettings) -> None:
    """Fail before dbt replaces a day whose raw inputs retention deleted and the inputs no longer hold
    (lib/operations/retention.py): its kept results would become zeros."""
    with connect(settings.warehouse_path) as con:
        try:
            if retention.refuse_retired_day(con, dt.date.fromisoformat(context.partition_key)):
                context.log.warning(f"{context.partition_key} had been retired: re-materialised from its inputs")
        except retention.RetiredDay as exc:
            raise dg.Failure(str(exc)) from None


def partition_row_counts(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """One AssetObservation per materialised (non-view) model with the partition's row count."""
    day = dt.date.fromisoformat(context.partition_key)
    tables = [key for key in context.selected_asset_keys if key.path[0] in ("intermediate", "marts")]
    if settings.is_spark:
        yield from _spark_row_counts(context, settings, day, tables)
        return
    con = connect(settings.warehouse_path, read_only=True)
    try:
        # tables with a day column, and the marts' views (the request marts: cheap projections); intermediate
        # views (overlaps, windows) would be recomputed just to be counted
        partitioned = {
            (schema, table)
            for schema, table in con.execute(
                """
                select c.table_schema, c.table_name
                from information_schema.columns as c
                join information_schema.tables as t using (table_schema, table_name)
                where c.column_name = 'day' and (t.table_type = 'BASE TABLE' or c.table_schema = 'marts')
                """
            ).fetchall()
        } | {tuple(relation.split(".")) for relation in parts.parquet_relations(con)}  # views over day files
        for key in tables:
            schema, table = key.path
            if (schema, table) not in partitioned:  # a whole-history table (e.g. the monthly training rates)
                continue
            (rows,) = fetch_one(
                con,
                f"select count(*) from {quote_ident(schema)}.{quote_ident(table)} where day = $day", {"day": day}
            )
            yield dg.AssetObservation(
                asset_key=key, partition=context.partition_key, metadata={"dagster/row_count": int(rows)}
            )
    finally:
        con.close()


def _spark_row_counts(context: dg.AssetExecutionContext, settings: ImpactSettings, day: dt.date, tables):
    """partition_row_counts on the Spark engine: the tables (not views) with a day column, in one query."""
    with settings.open_engine() as engine:
        counted = []
        for key in tables:
            schema, table = key.path
            if not engine.has_table(f"{schema}.{table}"):
                continue
            described = engine.execute(f"describe table extended `{schema}`.`{table}`").fetchall()
            names = {r[0] for r in described}
            kind = next((r[1] for r in described if r[0] == "Type"), "")
            # (tables, the marts' views, and parquet_partition's views over their <table>__days table)
            if "day" in names and (kind != "VIEW" or schema == "marts" or engine.has_table(f"{schema}.{table}__days")):
                counted.append(key)
        if not counted:
            return
        union = " union all ".join(
            f"select {i} as k, count(*) as n from `{k.path[0]}`.`{k.path[1]}` where day = $day"
            for i, k in enumerate(counted)
        )
        counts = dict(engine.execute(union, {"day": day}).fetchall())
    for i, key in enumerate(counted):
        yield dg.AssetObservation(
            asset_key=key, partition=context.partition_key, metadata={"dagster/row_count": int(counts.get(i, 0))}
        )
