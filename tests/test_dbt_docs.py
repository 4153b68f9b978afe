"""dbt's catalogue for analysts: every model, source and column is described in the YAML; the YAML lists every
column the warehouse has (so the descriptions cannot silently miss a new column); exposures name what reads the
marts; `make docs` builds the catalogue; docs/warehouse.md's reference is the current rendering of the YAML."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from orchestration.lib import warehouse_reference
from orchestration.lib.warehouse import connect

MANIFEST = REPO / "dbt_project" / "target" / "manifest.json"


@pytest.fixture(scope="module")
def manifest(dbt_manifest: Path) -> dict:
    return json.loads(dbt_manifest.read_text())


def _relations(manifest: dict) -> dict[str, tuple[str, str, dict]]:
    """unique_id -> (schema, table, node) of every model and source."""
    out = {}
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] == "model":
            out[uid] = (node["schema"], node.get("alias") or node["name"], node)
    for uid, node in manifest["sources"].items():
        out[uid] = (node["schema"], node["identifier"] or node["name"], node)
    return out


def test_every_model_source_and_column_is_described(manifest):
    missing = []
    for uid, (_, _, node) in _relations(manifest).items():
        if not (node.get("description") or "").strip():
            missing.append(uid)
        missing += [f"{uid}.{name}" for name, col in node["columns"].items() if not (col.get("description") or "").strip()]
    assert missing == [], f"{len(missing)} without a description, e.g. {missing[:10]}"
    for uid in manifest["exposures"]:
        assert manifest["exposures"][uid]["description"].strip(), uid


@pytest.mark.integration
@pytest.mark.xdist_group("webserver")  # shares demo_build
def test_the_yaml_lists_every_column_of_the_warehouse(manifest, demo_build):
    """Against a built warehouse (the demo, models job included): each model's and source's columns in the YAML are
    exactly the relation's columns, so a column added to the SQL (or a Python table) without a description fails
    here."""
    con = connect(demo_build.warehouse, read_only=True)
    try:
        actual: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in con.execute(
            "select table_schema, table_name, column_name from information_schema.columns order by ordinal_position"
        ).fetchall():
            actual.setdefault((schema, table), []).append(column)
    finally:
        con.close()
    problems = []
    for uid, (schema, table, node) in _relations(manifest).items():
        have = actual.get((schema, table))
        if have is None:
            problems.append(f"{uid}: no relation {schema}.{table} in the demo warehouse")
            continue
        listed = list(node["columns"])
        if missing := [c for c in have if c not in listed]:
            problems.append(f"{uid}: columns without YAML entry {missing}")
        if stale := [c for c in listed if c not in have]:
            problems.append(f"{uid}: YAML columns the warehouse does not have {stale}")
    assert problems == [], "\n".join(problems)
    described = {(schema, table) for schema, table, _ in _relations(manifest).values()}
    analysts_see = {
        key for key in actual if key[0] in ("raw", "factors", "staging", "intermediate", "marts", "models", "advice")
    }
    assert analysts_see - described == set(), "tables with no dbt model or source: " + str(analysts_see - described)


def test_exposures_name_what_reads_the_marts(manifest):
    """Every Dagster asset outside the dbt layers that depends on a mart is named in an exposure's label, and each
    exposure depends on real nodes."""
    from orchestration.definitions import defs

    labels = " ".join(e["label"] for e in manifest["exposures"].values())
    readers = {
        spec.key.to_user_string()
        for spec in defs().resolve_all_asset_specs()
        if spec.group_name in ("models", "comparisons", "reports", "advice")
        and any(dep.asset_key.path[0] == "marts" and dep.asset_key.path[1].startswith(("fct_", "agg_", "dim_"))
                for dep in spec.deps)
    }
    assert readers, "no asset reads the marts: the selection is wrong"
    assert [key for key in sorted(readers) if key not in labels] == []
    nodes = set(manifest["nodes"]) | set(manifest["sources"])
    for uid, exposure in manifest["exposures"].items():
        assert exposure["depends_on"]["nodes"] and set(exposure["depends_on"]["nodes"]) <= nodes, uid


def test_warehouse_reference_is_current(manifest):
    page = REPO / "docs" / "warehouse.md"
    text = page.read_text()
    rendered = warehouse_reference.render(manifest)
    assert warehouse_reference.splice(text, rendered) == text, (
        "docs/warehouse.md is not the current rendering of the dbt YAML: run "
        "`.venv/bin/python -m orchestration.lib.warehouse_reference docs/warehouse.md` (or make docs)"
    )
    for uid, (schema, table, _) in _relations(manifest).items():
        assert f"#### `{schema}.{table}`" in rendered, uid


@pytest.mark.integration
@pytest.mark.xdist_group("webserver")  # shares demo_build
def test_make_docs_builds_the_catalogue(demo_build, tmp_path):
    """`make docs` on the demo warehouse: dbt's catalogue with every model and source, their columns typed."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    out = tmp_path / "docs"
    reference = tmp_path / "warehouse.md"  # the target regenerates the page's reference: on a copy here
    shutil.copy(REPO / "docs" / "warehouse.md", reference)
    result = subprocess.run(
        [make, "--no-print-directory", "-o", ".venv/.installed", "-o", "dbt_project/target/manifest.json", "docs",
         f"WAREHOUSE={demo_build.warehouse}", f"DOCS_DIR={out}", f"REFERENCE={reference}",
         f"BIN={Path(sys.executable).parent}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert reference.read_text() == (REPO / "docs" / "warehouse.md").read_text()  # it was current
    catalog = json.loads((out / "catalog.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "static_index.html").stat().st_size > 100_000
    models = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    assert models and models <= set(catalog["nodes"])
    assert set(manifest["sources"]) <= set(catalog["sources"])
    fits = catalog["sources"]["source.inference_impact.models.energy_model_fits"]["columns"]
    assert fits["r_squared_uncentered"]["type"].upper() == "DOUBLE"
    assert manifest["sources"]["source.inference_impact.models.energy_model_fits"]["columns"]["r_squared_uncentered"][
        "description"].startswith("Uncentred R²")  # fmt: skip
