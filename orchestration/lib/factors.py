"""Factor tables (grid carbon intensity, water, data centre, hardware, models) with their provenance.

``load_factors`` replaces the tables of schema ``factors`` from two layers:

- the shipped defaults (``data/factors`` in the repository; sources and licences in its NOTICE.md), and
- the user's files under ``<data dir>/factors/`` (CONTRACT section 1), in the same columns.

A user row replaces the shipped row with the same key (grid hourly: zone + datetime_utc; annual: zone + year; water:
zone; datacenter: provider; hardware: component + hardware; gpu_power: hardware; models: the model key), so one zone
can be overridden and the rest kept. Every row carries ``origin`` ('shipped' or 'user'), ``source``, ``licence``, ``version``,
``source_file`` and ``source_row``; a user row without a source gets ``'user file <path>'`` (licence and version stay
empty). Bad rows go to ``raw.rejected_rows`` (input ``'factors/<table>'``) with a reason naming the column and value;
the rest load. Each load replaces everything it wrote before (tables and its rejected rows): it is idempotent.
A load whose inputs are byte for byte those of the last one (same files, same loader code) and whose tables still
hold what it stored is skipped: every daily run calls the loader, and the factor files rarely change.

Per-row work is set-based DuckDB SQL: CSV files are read as text (``ingest._csv_candidates``: real line numbers,
malformed lines kept) and typed with ``try_cast``; only the handful of models.yml entries pass through Python.

Model names: ``model_key`` (and the same rule in SQL, ``MODEL_KEY_SQL``) drops an ``org/`` prefix (everything up to
the last '/'), lower-cases and removes every character that is not a-z or 0-9: ``'meta-llama/Llama-2-70b-chat-hf'``
-> ``'llama270bchathf'``, ``'llama2-70b'`` -> ``'llama270b'``. ``factors.model_aliases`` maps every alias key (each
model's own name included) to its model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from orchestration.lib.ingestion.ingest import (
    REASON_KIND_SQL,
    _create_candidates,
    _csv_candidates,
    _fill_raw_record_sql,
    _install_macros,
    _parquet_candidates,
    _present,
    _shown,
    _typed_value,
    discover_files,
)
from orchestration.lib.warehouse import ensure_raw_schema, fetch_one

MODEL_KEY_SQL = r"regexp_replace(lower(regexp_replace(trim({col}), '^.*/', '')), '[^a-z0-9]', '', 'g')"


def model_key(name: object) -> str:
    """The normalised model name requests and factor files are matched on (see the module docstring)."""
    return re.sub(r"[^a-z0-9]", "", str(name).strip().rsplit("/", 1)[-1].lower())


PROVENANCE_COLUMNS = """
        origin varchar,
        source varchar,
        licence varchar,
        version varchar,
        source_file varchar,
        source_row bigint"""

FACTOR_DDL: tuple[str, ...] = (
    "create schema if not exists factors",
    f"""
    create table if not exists factors.grid_intensity_hourly (
        zone varchar not null,
        datetime_utc timestamp not null,  -- UTC hour start
        location_g_co2e_per_kwh double not null,
        market_g_co2e_per_kwh double,
        lifecycle_g_co2e_per_kwh double,
        estimated boolean,{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.grid_intensity_annual (
        zone varchar not null,
        year integer,  -- null: any year
        location_g_co2e_per_kwh double not null,
        market_g_co2e_per_kwh double,
        low_g_co2e_per_kwh double,
        high_g_co2e_per_kwh double,
        lifecycle_g_co2e_per_kwh double,
        basis varchar,  -- 'direct' (combustion), 'lifecycle' or 'unspecified': what location_* counts{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.water_intensity (
        zone varchar not null,
        ewif_l_per_kwh double not null,
        low_l_per_kwh double,
        high_l_per_kwh double,{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.datacenter (
        provider varchar not null,
        pue double not null,
        pue_low double,
        pue_high double,
        wue_onsite_l_per_kwh double,
        wue_low_l_per_kwh double,
        wue_high_l_per_kwh double,{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.hardware (
        component varchar not null,  -- 'gpu' or 'server'
        hardware varchar not null,  -- gpu_model prefix (case-insensitive) or 'default'
        embodied_kg_co2e double not null,
        embodied_low_kg_co2e double,
        embodied_high_kg_co2e double,
        embodied_water_l double,
        embodied_water_low_l double,
        embodied_water_high_l double,
        lifetime_years double not null,
        lifetime_low_years double,
        lifetime_high_years double,{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.gpu_power (
        hardware varchar not null,  -- GPU model prefix (case-insensitive, vendor prefix ignored) or 'default'
        max_power_w double not null,  -- maximum (TDP / board) power: the ceiling telemetry is checked against{PROVENANCE_COLUMNS}
    )
    """,
    f"""
    create table if not exists factors.models (
        model varchar not null,
        total_parameters_b double,
        active_parameters_b double,
        training_kg_co2e double,
        training_water_l double,
        fine_tuning_kg_co2e double,
        fine_tuning_water_l double,
        projected_lifetime_inferences double,
        service_start date,
        service_months integer,{PROVENANCE_COLUMNS}
    )
    """,
    # a LoRA adapter is a models.yml entry with base_model (lib/images): added with the image requests
    "alter table factors.models add column if not exists base_model varchar",
    f"""
    create table if not exists factors.image_quality (
        quality varchar not null,  -- the label requests carry (matched case-insensitively)
        model varchar,  -- null: every model; else the model's own row (matched on the model key)
        steps integer not null,
        width integer,  -- the size an image request without one gets
        height integer,{PROVENANCE_COLUMNS}
    )
    """,
    """
    create table if not exists factors.model_aliases (
        alias_key varchar not null,  -- unique
        model varchar not null,
        origin varchar,
        source_file varchar
    )
    """,
    """
    create table if not exists factors.load_state (
        fingerprint varchar not null,  -- inputs_fingerprint() of the last load
        loaded_at timestamp not null,  -- UTC
        summaries varchar not null  -- JSON: the FactorSummary of each table
    )
    """,
)


@dataclass(frozen=True)
class _Spec:
    """One factor table: its columns (name -> kind), the files it reads and the rules its rows must pass."""

    table: str
    columns: dict[str, str]  # text, double, integer, timestamp, boolean, date
    required: tuple[str, ...]
    key: tuple[str, ...]
    user_paths: tuple[str, ...]  # file names, or a folder ending in '/' (read recursively)
    nonnegative: tuple[str, ...] = ()
    bands: tuple[tuple[str, str, str], ...] = ()  # (value, low, high)
    extra_checks: tuple[tuple[str, str], ...] = ()  # (SQL condition on v_* columns, SQL reason)

    @property
    def input_name(self) -> str:
        return f"factors/{self.table}"


_PROVENANCE_FIELDS: tuple[str, ...] = ("source", "licence", "version")
HOURLY_SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv", ".parquet")

SPECS: tuple[_Spec, ...] = (
    _Spec(
        table="grid_intensity_hourly",
        columns={
            "zone": "text",
            "datetime_utc": "timestamp",
            "location_g_co2e_per_kwh": "double",
            "market_g_co2e_per_kwh": "double",
            "lifecycle_g_co2e_per_kwh": "double",
            "estimated": "boolean",
        },
        required=("zone", "datetime_utc", "location_g_co2e_per_kwh"),
        key=("zone", "datetime_utc"),
        user_paths=("grid_intensity/",),
        nonnegative=("location_g_co2e_per_kwh", "market_g_co2e_per_kwh", "lifecycle_g_co2e_per_kwh"),
        extra_checks=(
            (
                "v_datetime_utc <> date_trunc('hour', v_datetime_utc)",
                "'datetime_utc ' || impact_quote(" + _shown("datetime_utc") + ") || ' is not on the hour "
                "(one row per UTC hour start)'",
            ),
        ),
    ),
    _Spec(
        table="grid_intensity_annual",
        columns={
            "zone": "text",
            "year": "integer",
            "location_g_co2e_per_kwh": "double",
            "market_g_co2e_per_kwh": "double",
            "low_g_co2e_per_kwh": "double",
            "high_g_co2e_per_kwh": "double",
            "lifecycle_g_co2e_per_kwh": "double",
            "basis": "text",
        },
        required=("zone", "location_g_co2e_per_kwh"),
        key=("zone", "year"),
        user_paths=("grid_annual.csv",),
        nonnegative=(
            "location_g_co2e_per_kwh",
            "market_g_co2e_per_kwh",
            "low_g_co2e_per_kwh",
            "high_g_co2e_per_kwh",
            "lifecycle_g_co2e_per_kwh",
        ),
        bands=(("location_g_co2e_per_kwh", "low_g_co2e_per_kwh", "high_g_co2e_per_kwh"),),
        extra_checks=(
            ("v_year not between 1900 and 2100", "'year (' || v_year || ') is not a plausible year'"),
            (
                "v_basis not in ('direct', 'lifecycle', 'unspecified')",
                "'basis ' || impact_quote(v_basis) || ' is not one of direct, lifecycle, unspecified'",
            ),
        ),
    ),
    _Spec(
        table="water_intensity",
        columns={
            "zone": "text",
            "ewif_l_per_kwh": "double",
            "low_l_per_kwh": "double",
            "high_l_per_kwh": "double",
        },
        required=("zone", "ewif_l_per_kwh"),
        key=("zone",),
        user_paths=("water.csv",),
        nonnegative=("ewif_l_per_kwh", "low_l_per_kwh", "high_l_per_kwh"),
        bands=(("ewif_l_per_kwh", "low_l_per_kwh", "high_l_per_kwh"),),
    ),
    _Spec(
        table="datacenter",
        columns={
            "provider": "text",
            "pue": "double",
            "pue_low": "double",
            "pue_high": "double",
            "wue_onsite_l_per_kwh": "double",
            "wue_low_l_per_kwh": "double",
            "wue_high_l_per_kwh": "double",
        },
        required=("provider", "pue"),
        key=("provider",),
        user_paths=("datacenter.csv",),
        nonnegative=("wue_onsite_l_per_kwh", "wue_low_l_per_kwh", "wue_high_l_per_kwh"),
        bands=(
            ("pue", "pue_low", "pue_high"),
            ("wue_onsite_l_per_kwh", "wue_low_l_per_kwh", "wue_high_l_per_kwh"),
        ),
        extra_checks=tuple(
            (f"v_{c} < 1", f"'{c} (' || v_{c} || ') is below 1 (PUE = facility / IT energy)'")
            for c in ("pue", "pue_low", "pue_high")
        ),
    ),
    _Spec(
        table="hardware",
        columns={
            "component": "text",
            "hardware": "text",
            "embodied_kg_co2e": "double",
            "embodied_low_kg_co2e": "double",
            "embodied_high_kg_co2e": "double",
            "embodied_water_l": "double",
            "embodied_water_low_l": "double",
            "embodied_water_high_l": "double",
            "lifetime_years": "double",
            "lifetime_low_years": "double",
            "lifetime_high_years": "double",
        },
        required=("component", "hardware", "embodied_kg_co2e", "lifetime_years"),
        key=("component", "hardware"),
        user_paths=("hardware.csv",),
        nonnegative=(
            "embodied_kg_co2e",
            "embodied_low_kg_co2e",
            "embodied_high_kg_co2e",
            "embodied_water_l",
            "embodied_water_low_l",
            "embodied_water_high_l",
        ),
        bands=(
            ("embodied_kg_co2e", "embodied_low_kg_co2e", "embodied_high_kg_co2e"),
            ("embodied_water_l", "embodied_water_low_l", "embodied_water_high_l"),
            ("lifetime_years", "lifetime_low_years", "lifetime_high_years"),
        ),
        extra_checks=(
            (
                "lower(v_component) not in ('gpu', 'server')",
                "'component ' || impact_quote(v_component) || ' is not gpu or server'",
            ),
            *(
                (f"v_{c} <= 0", f"'{c} (' || v_{c} || ') is not positive'")
                for c in ("lifetime_years", "lifetime_low_years", "lifetime_high_years")
            ),
        ),
    ),
    _Spec(
        table="gpu_power",
        columns={"hardware": "text", "max_power_w": "double"},
        required=("hardware", "max_power_w"),
        key=("hardware",),
        user_paths=("gpu_power.csv",),
        extra_checks=(("v_max_power_w <= 0", "'max_power_w (' || v_max_power_w || ') is not positive'"),),
    ),
    _Spec(
        table="models",
        columns={
            "model": "text",
            "total_parameters_b": "double",
            "active_parameters_b": "double",
            "training_kg_co2e": "double",
            "training_water_l": "double",
            "fine_tuning_kg_co2e": "double",
            "fine_tuning_water_l": "double",
            "projected_lifetime_inferences": "double",
            "service_start": "date",
            "service_months": "integer",
            "base_model": "text",
        },
        required=("model",),
        key=("model",),
        user_paths=("models.yml",),
        nonnegative=(
            "total_parameters_b",
            "active_parameters_b",
            "training_kg_co2e",
            "training_water_l",
            "fine_tuning_kg_co2e",
            "fine_tuning_water_l",
        ),
        extra_checks=(
            ("v_model_key = ''", "'model name ' || impact_quote(v_model) || ' has no letters or digits'"),
            (
                "v_projected_lifetime_inferences <= 0",
                "'projected_lifetime_inferences (' || v_projected_lifetime_inferences || ') is not positive'",
            ),
            ("v_service_months <= 0", "'service_months (' || v_service_months || ') is not positive'"),
            (
                "v_active_parameters_b > v_total_parameters_b",
                (
                    "'active_parameters_b (' || v_active_parameters_b || ') is above total_parameters_b ('"
                    " || v_total_parameters_b || ')'"
                ),
            ),
            # a LoRA adapter's own training is a fine-tuning of its base model
            (
                "v_base_model is not null and v_training_kg_co2e is not null",
                (
                    "'training_kg_co2e on adapter ' || impact_quote(v_model) || ' (base_model '"
                    " || impact_quote(v_base_model) || '): an adapter''s footprint is fine_tuning_kg_co2e'"
                ),
            ),
            (
                f"v_base_model is not null and {MODEL_KEY_SQL.format(col='v_base_model')} = v_model_key",
                "'model ' || impact_quote(v_model) || ' is its own base_model'",
            ),
        ),
    ),
    _Spec(
        table="image_quality",
        columns={"quality": "text", "model": "text", "steps": "integer", "width": "integer", "height": "integer"},
        required=("quality", "steps"),
        key=("model", "quality"),
        user_paths=("image_quality.csv",),
        extra_checks=(
            *((f"v_{c} < 1", f"'{c} (' || v_{c} || ') is not positive'") for c in ("steps", "width", "height")),
            ("(v_width is null) <> (v_height is null)", "'width and height go together (one is empty)'"),
        ),
    ),
)
SPEC_BY_TABLE: dict[str, _Spec] = {s.table: s for s in SPECS}


@dataclass
class FactorSummary:
    """What one factor table was loaded from, what it kept and what it rejected."""

    table: str
    files: list[str] = field(default_factory=list)
    loaded_shipped: int = 0
    loaded_user: int = 0
    overridden_shipped: int = 0  # shipped rows replaced by a user row with the same key
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    shipped_defaults_only: bool = True  # the user gave no file for this table
    # files none of whose rows could be read (unreadable, malformed YAML, a required column missing): file -> reason
    files_rejected: dict[str, str] = field(default_factory=dict)
    loaded_at: str | None = None  # when these rows were stored (UTC, ISO 8601)
    reloaded: bool = True  # False: the inputs had not changed since loaded_at, the stored tables were kept

    @property
    def loaded(self) -> int:
        return self.loaded_shipped + self.loaded_user


# --------------------------------------------------------------------------------------------------------------
# Reading files into text candidates
# --------------------------------------------------------------------------------------------------------------


def _typed_fields(spec: _Spec) -> dict[str, str]:
    """Fields with a typed shadow column (Parquet delivers them typed; text is parsed)."""
    return {
        c: ("timestamp" if kind == "timestamp" else "double")
        for c, kind in spec.columns.items()
        if kind in ("timestamp", "double", "integer")
    }


def _fields(spec: _Spec) -> tuple[str, ...]:
    return (*spec.columns, *_PROVENANCE_FIELDS)


def _files(spec: _Spec, root: Path) -> list[Path]:
    files: list[Path] = []
    for rel in spec.user_paths:
        if rel.endswith("/"):
            files += discover_files(root / rel, HOURLY_SUFFIXES)
        elif (root / rel).is_file():
            files.append(root / rel)
    return files


def _header(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    if path.name.endswith(".parquet"):
        return list(con.sql("select * from read_parquet($p) limit 0", params={"p": str(path)}).columns)
    return list(
        con.sql(
            "select * from read_csv($p, all_varchar = true, header = true) limit 0", params={"p": str(path)}
        ).columns
    )


def _reject_file(
    con: duckdb.DuckDBPyConnection, spec: _Spec, display: str, row: int | None, reason: str, raw: str
):
    con.execute(
        "insert into _fc_rejects values ($input, $file, $row, $reason, $raw)",
        {"input": spec.input_name, "file": display, "row": row, "reason": reason, "raw": raw[:2000]},
    )


def _read_tabular(
    con: duckdb.DuckDBPyConnection, spec: _Spec, path: Path, display: str, origin: str
) -> str | None:
    """Append one CSV/CSV.gz/Parquet file's rows to the table's candidates (text, typed shadows for Parquet).
    Returns the reason when the file is rejected whole (none of its rows read), else None."""
    try:
        header = _header(con, path)
    except duckdb.Error as exc:
        reason = f"unreadable file: {str(exc).splitlines()[0]}"
        _reject_file(con, spec, display, None, reason, "")
        return reason
    missing = [c for c in spec.required if c not in header]
    if missing:
        reason = f"missing required column {', '.join(missing)} (columns: {', '.join(header)})"
        _reject_file(con, spec, display, 1, reason, ",".join(header))
        return reason
    if path.name.endswith(".parquet"):
        _parquet_candidates(con, path, display, _fields(spec), _typed_fields(spec), "_fc_cand")
    else:
        _csv_candidates(con, path, display, _fields(spec), "_fc_cand")
    con.execute("update _fc_cand set origin = $origin where origin is null", {"origin": origin})
    return None


def _yaml_line_numbers(text: str) -> list[int]:
    """1-based line of each entry of the models list, or of each name of the models mapping (the node positions
    of the composed document)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if getattr(k, "value", None) == "models"), None)
    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    if isinstance(node, yaml.MappingNode):
        return [name.start_mark.line + 1 for name, _ in node.value]
    return []


def _scalar_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _models_entries(doc: object) -> list[tuple[object, str | None]] | None:
    """The entries of a models.yml document in file order, each with a problem of its form (or None): a top-level
    `models:` list (or a bare list) of mappings, or a `models:` mapping keyed by model name
    (`models: {my-model: {training_kg_co2e: 10}}`), whose names become each entry's `model` (an entry that also
    names another model is refused: which one was meant?). None when the document has neither form."""
    items = doc.get("models") if isinstance(doc, dict) else doc
    if isinstance(items, list):
        return [(item, None) for item in items]
    if not isinstance(items, dict):
        return None
    entries: list[tuple[object, str | None]] = []
    for name, entry in items.items():  # a handful of models
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            entries.append((entry, None))
            continue
        given = entry.get("model")
        problem = None
        if given is not None and model_key(given) != model_key(name):
            problem = (
                f"malformed models.yml entry: listed under {_scalar_text(name)!r} but names model "
                f"{_scalar_text(given)!r}"
            )
        entries.append(({**entry, "model": name if given is None else given}, problem))
    return entries


def _read_models_yaml(
    con: duckdb.DuckDBPyConnection, spec: _Spec, path: Path, display: str, origin: str
) -> str | None:
    """models.yml: a top-level `models:` list (or a bare list) of mappings, or a `models:` mapping keyed by model
    name. The entries (a handful) are checked for shape here; their values are typed and checked in SQL like every
    other table's. Returns the reason when the file is rejected whole, else None."""
    text = path.read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = f"malformed YAML: {str(exc).splitlines()[0]}"
        _reject_file(con, spec, display, None, reason, text)
        return reason
    items = _models_entries(doc)
    if items is None:
        reason = "models.yml has no top-level 'models:' list or mapping keyed by model name"
        _reject_file(con, spec, display, None, reason, text)
        return reason
    lines = _yaml_line_numbers(text)
    allowed = {*spec.columns, *_PROVENANCE_FIELDS, "aliases"}
    rows, aliases = [], []
    for index, (item, problem) in enumerate(items):  # a handful of models, not rows of data
        line = lines[index] if index < len(lines) else index + 1
        record = yaml.safe_dump(item, default_flow_style=True, sort_keys=False).strip()
        if not isinstance(item, dict):
            problem = "malformed models.yml entry: not a mapping"
        elif problem is None:
            unknown = sorted(str(k) for k in item if k not in allowed)
            names = item.get("aliases") or []
            if unknown:
                problem = f"malformed models.yml entry: unknown key {', '.join(unknown)}"
            elif not isinstance(names, list) or any(isinstance(a, (dict, list)) or a is None for a in names):
                problem = "malformed models.yml entry: aliases is not a list of names"
            elif any(isinstance(item.get(c), (dict, list)) for c in (*spec.columns, *_PROVENANCE_FIELDS)):
                problem = "malformed models.yml entry: a value is a list or mapping"
        if problem:
            _reject_file(con, spec, display, line, problem, record)
            continue
        rows.append((display, line, record, origin, *(_scalar_text(item.get(c)) for c in _fields(spec))))
        aliases += [(display, line, origin, _scalar_text(item.get("model")), str(a)) for a in names]
    if rows:
        cols = ", ".join(f'"{c}"' for c in _fields(spec))
        marks = ", ".join("?" for _ in range(4 + len(_fields(spec))))
        con.executemany(
            f"insert into _fc_cand (source_file, source_row, raw_record, origin, {cols}) values ({marks})",
            rows,
        )
    if aliases:
        con.executemany("insert into _fc_alias_cand values (?, ?, ?, ?, ?)", aliases)
    return None


# --------------------------------------------------------------------------------------------------------------
# Typing, checks, override
# --------------------------------------------------------------------------------------------------------------


def _value_sql(name: str, kind: str, typed: dict[str, str]) -> str:
    if kind == "text":
        return f"nullif(trim(\"{name}\"), '')"
    if kind == "boolean":
        return f'try_cast(trim("{name}") as boolean)'
    if kind == "date":
        return f'try_cast(trim("{name}") as date)'
    value = _typed_value(name, typed)
    if kind == "integer":
        return f"case when {value} = round({value}) then cast({value} as integer) end"
    return value


def _unparseable_sql(name: str, kind: str) -> tuple[str, str]:
    shown = _shown(name) if kind in ("timestamp", "double", "integer") else f'trim("{name}")'
    if kind == "timestamp":
        return f"v_{name} is null", f"'{name} ' || impact_ts_problem({shown}, null)"
    if kind == "double":
        return (
            f"v_{name} is null or not isfinite(v_{name})",
            f"'unparseable {name} ' || impact_quote({shown})",
        )
    if kind == "integer":
        return f"v_{name} is null", f"'unparseable {name} (whole number expected) ' || impact_quote({shown})"
    if kind == "boolean":
        return f"v_{name} is null", f"'unparseable {name} (true or false expected) ' || impact_quote({shown})"
    return f"v_{name} is null", f"'unparseable {name} (YYYY-MM-DD expected) ' || impact_quote({shown})"


def _key_sql(spec: _Spec) -> str:
    """The override/duplicate key: zones and providers as written (trimmed), names case-insensitively."""
    if spec.table == "models":
        return "v_model_key"
    parts = []
    for k in spec.key:
        if k in ("hardware", "component", "provider", "quality"):
            parts.append(f"lower(v_{k})")
        elif k == "model":  # a table's per-model rows (image_quality): matched on the model key
            parts.append(f"coalesce({MODEL_KEY_SQL.format(col='v_model')}, '')")
        else:
            parts.append(f"coalesce(cast(v_{k} as varchar), '')")
    return " || chr(31) || ".join(parts)


def _given(spec: _Spec, name: str) -> str:
    """SQL: the field has a value (typed shadow or non-blank text)."""
    return _present(name) if name in _typed_fields(spec) else f'not impact_blank("{name}")'


def _checks(spec: _Spec) -> list[tuple[str, str]]:
    checks: list[tuple[str, str]] = [("parse_error is not null", "parse_error")]
    checks += [(f"not {_given(spec, c)}", f"'missing {c}'") for c in spec.required]
    for name, kind in spec.columns.items():
        if kind != "text":
            cond, reason = _unparseable_sql(name, kind)
            checks.append((f"{_given(spec, name)} and ({cond})", reason))
    checks += [(f"v_{c} < 0", f"'negative {c} (' || v_{c} || ')'") for c in spec.nonnegative]
    checks += list(spec.extra_checks)
    for value, low, high in spec.bands:
        checks.append(
            (f"v_{low} > v_{value}", f"'{low} (' || v_{low} || ') is above {value} (' || v_{value} || ')'")
        )
        checks.append(
            (f"v_{high} < v_{value}", f"'{high} (' || v_{high} || ') is below {value} (' || v_{value} || ')'")
        )
    return checks


def _stage(con: duckdb.DuckDBPyConnection, spec: _Spec) -> None:
    """_fc_typed: every candidate with typed values, its key and the first failed check (reason) if any;
    duplicates of a key within one origin (file or user files together) are refused after the first."""
    typed = _typed_fields(spec)
    values = ", ".join(f'{_value_sql(c, k, typed)} as "v_{c}"' for c, k in spec.columns.items())
    extra = f", {MODEL_KEY_SQL.format(col='v_model')} as v_model_key" if spec.table == "models" else ""
    reason = "coalesce(" + ", ".join(f"case when {c} then {r} end" for c, r in _checks(spec)) + ")"
    key_names = ", ".join(spec.key)
    key_shown = " || ', ' || ".join(f"'{k} ' || impact_quote(cast(v_{k} as varchar))" for k in spec.key)
    con.execute(
        f"""
        create or replace temp table _fc_typed as
        with v as (select *, {values} from _fc_cand),
        k as (select *{extra} from v),
        checked as (select *, {reason} as check_reason, {_key_sql(spec)} as fkey from k),
        ranked as (
            select *,
                row_number() over w as dup_rank,
                first_value(source_file || ':' || source_row) over w as first_at
            from checked
            window w as (partition by origin, case when check_reason is null then fkey end
                         order by source_file, source_row)
        )
        select * exclude (dup_rank, first_at, check_reason),
            coalesce(
                check_reason,
                case when dup_rank > 1 then
                    'duplicate key ({key_names}) ' || {key_shown} || ' (first at ' || first_at || ', kept)'
                end
            ) as reason
        from ranked
        """
    )


def _final_select(spec: _Spec) -> str:
    """The rows that load: valid, and the user's row where a user and a shipped row share a key."""
    values = ", ".join(f'"v_{c}" as "{c}"' for c in spec.columns)
    return f"""
        select {values}, origin,
            coalesce(nullif(trim(source), ''), case when origin = 'user' then 'user file ' || source_file end)
                as source,
            nullif(trim(licence), '') as licence,
            nullif(trim(version), '') as version,
            source_file, source_row
        from _fc_typed
        where reason is null
        qualify row_number() over (partition by fkey order by origin = 'user' desc) = 1
    """


def _insert_rejects(con: duckdb.DuckDBPyConnection, spec: _Spec) -> None:
    raw = _fill_raw_record_sql(_fields(spec), _typed_fields(spec))
    con.execute(
        f"""
        insert into _fc_rejects
        select $input, source_file, source_row, reason, {raw}
        from _fc_typed where reason is not null
        """,
        {"input": spec.input_name},
    )


# --------------------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------------------


def _display(path: Path, root: Path, origin: str) -> str:
    """How a file is named in source_file: relative to the input directory for the user's files ('factors/...'),
    'shipped:factors/...' for the shipped defaults."""
    return f"shipped:{path.relative_to(root.parent)}" if origin == "shipped" else str(path.relative_to(root))


def load_factors(
    con: duckdb.DuckDBPyConnection, data_dir: Path, shipped_dir: Path
) -> dict[str, FactorSummary]:
    """Replace every factors.* table from the shipped defaults overlaid with the user's factor files.

    ``data_dir`` is the input directory (the user's files are in ``data_dir/factors``; none is fine), ``shipped_dir``
    the folder of shipped defaults (``data/factors`` in the repository). Returns one summary per table.
    """
    data_dir, shipped_dir = Path(data_dir), Path(shipped_dir)
    user_dir = data_dir / "factors"
    _install_macros(con)
    ensure_raw_schema(con)  # raw.rejected_rows
    for ddl in FACTOR_DDL:
        con.execute(ddl)
    fingerprint = inputs_fingerprint(shipped_dir, user_dir)
    kept = _unchanged_load(con, fingerprint)
    if kept is not None:
        return kept
    con.execute(
        "create or replace temp table _fc_rejects (input varchar, source_file varchar, source_row bigint, "
        "reason varchar, raw_record varchar)"
    )
    con.execute(
        "create or replace temp table _fc_alias_cand (source_file varchar, source_row bigint, origin varchar, "
        "model varchar, alias varchar)"
    )
    summaries: dict[str, FactorSummary] = {}
    for spec in SPECS:
        summary = FactorSummary(table=spec.table)
        _create_candidates(con, "_fc_cand", _fields(spec), _typed_fields(spec))
        con.execute("alter table _fc_cand add column origin varchar")
        for origin, root in (("shipped", shipped_dir), ("user", user_dir)):
            files = _files(spec, root)
            if origin == "user" and files:
                summary.shipped_defaults_only = False
            for path in files:
                display = _display(path, root if origin == "shipped" else data_dir, origin)
                summary.files.append(display)
                read = _read_models_yaml if spec.table == "models" else _read_tabular
                whole = read(con, spec, path, display, origin)
                if whole is not None:
                    summary.files_rejected[display] = whole
        _stage(con, spec)
        con.execute(f"create or replace temp table _fc_final_{spec.table} as {_final_select(spec)}")
        _insert_rejects(con, spec)
        counts = fetch_one(
            con,
            f"""
            select count(*) filter (where origin = 'shipped'), count(*) filter (where origin = 'user'),
                (select count(*) from _fc_typed where reason is null and origin = 'shipped')
            from _fc_final_{spec.table}
            """
        )
        summary.loaded_shipped, summary.loaded_user = int(counts[0]), int(counts[1])
        summary.overridden_shipped = int(counts[2]) - summary.loaded_shipped
        summaries[spec.table] = summary
        if spec.table == "models":
            _stage_aliases(con)
    for spec in SPECS:
        rows = con.execute(
            f"select {REASON_KIND_SQL} as kind, count(*) from _fc_rejects where input = $input "
            "group by kind order by count(*) desc, kind",
            {"input": spec.input_name},
        ).fetchall()
        summaries[spec.table].rejected_by_reason = {str(k): int(n) for k, n in rows}
        summaries[spec.table].rejected = sum(n for _, n in rows)
    alias = FactorSummary(table="model_aliases", files=list(summaries["models"].files))
    alias.shipped_defaults_only = summaries["models"].shipped_defaults_only
    (alias.loaded_shipped, alias.loaded_user) = fetch_one(
        con,
        "select count(*) filter (where origin = 'shipped'), count(*) filter (where origin = 'user') "
        f"from _fc_alias_all where {_STORED_ALIASES}"
    )
    summaries["model_aliases"] = alias
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    for summary in summaries.values():
        summary.loaded_at = now.isoformat() + "Z"
    _store(con, now, fingerprint, summaries)
    return summaries


# a load's inputs: the files of every table (shipped and the user's), and the code that reads them
_LOADER_CODE = (Path(__file__), Path(__file__).parent / "ingestion" / "ingest.py")


def inputs_fingerprint(shipped_dir: Path, user_dir: Path) -> str:
    """A hash of everything a load depends on: the loader's code and, per table, each input file's name and bytes
    (shipped defaults and the user's files, found as the load finds them). A file added, removed, renamed or
    edited changes it."""
    h = hashlib.sha256()
    for code in _LOADER_CODE:
        h.update(code.read_bytes())
    for spec in SPECS:
        for origin, root in (("shipped", shipped_dir), ("user", user_dir)):
            for path in _files(spec, root):
                h.update(f"\0{spec.table}\0{origin}\0{path.relative_to(root)}\0".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _unchanged_load(con: duckdb.DuckDBPyConnection, fingerprint: str) -> dict[str, FactorSummary] | None:
    """The last load's summaries if its inputs had this fingerprint and the factor tables and rejected rows still
    hold as many rows as it stored (a table emptied by hand is reloaded); None otherwise."""
    state = fetch_one(con, "select fingerprint, summaries from factors.load_state")
    if state is None or state[0] != fingerprint:
        return None
    summaries = {
        table: FactorSummary(**{**fields, "reloaded": False}) for table, fields in json.loads(state[1]).items()
    }
    counts = fetch_one(
        con,
        "select " + ", ".join(f"(select count(*) from factors.{table})" for table in summaries)
        + ", (select count(*) from raw.rejected_rows where input like 'factors/%')",
    )
    expected = [s.loaded for s in summaries.values()] + [sum(s.rejected for s in summaries.values())]
    return summaries if list(counts) == expected else None


# the staged aliases that factors.model_aliases keeps
_STORED_ALIASES = "claim_rank = 1 and alias_key <> ''"


def _stage_aliases(con: duckdb.DuckDBPyConnection) -> None:
    """Aliases of the models that loaded (each model's own name included). An alias key claimed by two models
    goes to the user's model, then to the model it is the own name of, then to the first in file order; the
    others are refused (input 'factors/models')."""
    key = MODEL_KEY_SQL.format(col="alias")
    con.execute(
        f"""
        create or replace temp table _fc_alias_all as
        with claims as (
            select m.model, m.origin, m.source_file, m.source_row, m.model as alias, true as own
            from _fc_final_models m
            union all
            select m.model, m.origin, a.source_file, a.source_row, a.alias, false
            from _fc_alias_cand a
            join _fc_final_models m
              on m.origin = a.origin and m.source_file = a.source_file and m.source_row = a.source_row
        )
        select *, {key} as alias_key,
            row_number() over (partition by {key}
                               order by origin = 'user' desc, own desc, source_file, source_row) as claim_rank,
            first_value(model) over (partition by {key}
                                     order by origin = 'user' desc, own desc, source_file, source_row) as winner
        from claims
        """
    )
    con.execute(
        """
        insert into _fc_rejects
        select 'factors/models', source_file, source_row,
            case when alias_key = '' then 'alias ' || impact_quote(alias) || ' has no letters or digits'
                 else 'alias ' || impact_quote(alias) || ' (key ' || impact_quote(alias_key) || ') of model '
                      || impact_quote(model) || ' already names model ' || impact_quote(winner) end,
            json_object('model', model, 'alias', alias)::varchar
        from _fc_alias_all
        where alias_key = '' or (claim_rank > 1 and model <> winner)
        """
    )


def _store(
    con: duckdb.DuckDBPyConnection,
    now: dt.datetime,
    fingerprint: str,
    summaries: dict[str, FactorSummary],
) -> None:
    """Replace the factor tables, this loader's rejected rows and the load's state in one transaction."""
    con.execute("begin transaction")
    try:
        for spec in SPECS:
            con.execute(f"delete from factors.{spec.table}")
            con.execute(f"insert into factors.{spec.table} by name select * from _fc_final_{spec.table}")
        con.execute("delete from factors.model_aliases")
        con.execute(
            f"""
            insert into factors.model_aliases
            select alias_key, model, origin, source_file from _fc_alias_all
            where {_STORED_ALIASES}
            """
        )
        con.execute("delete from raw.rejected_rows where input like 'factors/%'")
        con.execute(
            "insert into raw.rejected_rows select null, input, source_file, source_row, reason, raw_record, $now "
            "from _fc_rejects",
            {"now": now},
        )
        con.execute("delete from factors.load_state")
        con.execute(
            "insert into factors.load_state values ($fingerprint, $now, $summaries)",
            {
                "fingerprint": fingerprint,
                "now": now,
                "summaries": json.dumps({t: dataclasses.asdict(x) for t, x in summaries.items()}),
            },
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
