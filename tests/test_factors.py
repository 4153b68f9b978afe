"""Factor tables: the shipped defaults, user overrides, rejected rows, idempotence and the model-name rule."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import SHARED_DATA, require_shared_data

from orchestration.lib.factors import MODEL_KEY_SQL, SPECS, load_factors, model_key
from orchestration.lib.warehouse import connect

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "factors"
SHARED_EM = SHARED_DATA / "electricitymaps-hourly-carbon-intensity"
TABLES = [s.table for s in SPECS] + ["model_aliases"]


def _con(tmp_path: Path, name: str = "w.duckdb") -> duckdb.DuckDBPyConnection:
    return connect(tmp_path / name)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchone()[0])


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """The full shipped defaults, loaded once (no user files): (connection, summaries)."""
    tmp = tmp_path_factory.mktemp("shipped")
    con = connect(tmp / "w.duckdb")
    summaries = load_factors(con, tmp / "no-inputs", SHIPPED)
    yield con, summaries
    con.close()


@pytest.fixture(scope="module")
def shipped_con(shipped: tuple[duckdb.DuckDBPyConnection, dict]) -> duckdb.DuckDBPyConnection:
    return shipped[0]


@pytest.fixture
def small_shipped(tmp_path: Path) -> Path:
    """The shipped defaults with one hourly file (US-CAL-CISO 2023), for fast override/reject tests."""
    root = tmp_path / "shipped" / "factors"
    (root / "grid_intensity").mkdir(parents=True)
    for name in ("grid_annual.csv", "water.csv", "datacenter.csv", "hardware.csv", "models.yml"):
        shutil.copy(SHIPPED / name, root / name)
    shutil.copy(SHIPPED / "grid_intensity" / "US-CAL-CISO_2023.parquet", root / "grid_intensity")
    return root


def _user(tmp_path: Path, rel: str, text: str) -> Path:
    path = tmp_path / "inputs" / "factors" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return tmp_path / "inputs"


def _rejects(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[int, str]]:
    return con.execute(
        "select source_row, reason from raw.rejected_rows where input = $i order by source_row",
        {"i": f"factors/{table}"},
    ).fetchall()


# --------------------------------------------------------------------------------------------------------------
# Shipped defaults
# --------------------------------------------------------------------------------------------------------------


def test_shipped_row_counts(shipped: tuple[duckdb.DuckDBPyConnection, dict]) -> None:
    shipped_con, summaries = shipped
    counts = {t: _count(shipped_con, f"select count(*) from factors.{t}") for t in TABLES}
    assert counts["grid_intensity_hourly"] == 4 * 8760 + 8 * 8784  # 12 zone-years, 2024 is a leap year
    assert counts["grid_intensity_annual"] > 200 and counts["water_intensity"] > 200
    assert counts["datacenter"] >= 2 and counts["hardware"] >= 2 and counts["models"] >= 3
    assert counts["model_aliases"] > counts["models"]
    assert _count(shipped_con, "select count(*) from raw.rejected_rows where input like 'factors/%'") == 0
    assert all(s.shipped_defaults_only and s.loaded_user == 0 for s in summaries.values())
    assert summaries["grid_intensity_hourly"].loaded_shipped == counts["grid_intensity_hourly"]


@pytest.mark.parametrize("table", [s.table for s in SPECS])
def test_shipped_rows_carry_provenance(shipped_con: duckdb.DuckDBPyConnection, table: str) -> None:
    missing = _count(
        shipped_con,
        f"""select count(*) from factors.{table}
            where source is null or licence is null or version is null or origin <> 'shipped'
               or source_file is null or source_row is null""",
    )
    assert missing == 0


def test_shipped_required_rows(shipped_con: duckdb.DuckDBPyConnection) -> None:
    con = shipped_con
    assert _count(con, "select count(*) from factors.datacenter where provider = 'default'") == 1
    assert _count(con, "select count(*) from factors.hardware where hardware = 'default'") == 2
    assert _count(con, "select count(*) from factors.grid_intensity_annual where zone = 'WORLD'") == 1
    assert _count(con, "select count(*) from factors.water_intensity where zone = 'WORLD'") == 1
    for zone in ("US", "DE", "FR", "GB"):
        assert _count(con, f"select count(*) from factors.water_intensity where zone = '{zone}'") == 1
    # the bands hold and PUE is a PUE
    assert (
        _count(
            con, "select count(*) from factors.datacenter where pue < 1 or pue_low > pue or pue_high < pue"
        )
        == 0
    )
    # the sample's model resolves through an alias
    assert con.execute(
        "select model from factors.model_aliases where alias_key = 'llama270b'"
    ).fetchone() == ("Llama-2-70B",)


def test_shipped_hourly_unique_and_covers_the_sample_day(shipped_con: duckdb.DuckDBPyConnection) -> None:
    con = shipped_con
    assert (
        _count(
            con,
            "select count(*) from (select zone, datetime_utc from factors.grid_intensity_hourly group by all "
            "having count(*) > 1)",
        )
        == 0
    )
    for zone in ("US-CAL-CISO", "US-MIDA-PJM"):
        hours = _count(
            con,
            f"""select count(distinct datetime_utc) from factors.grid_intensity_hourly
                where zone = '{zone}' and datetime_utc >= '2023-11-16' and datetime_utc < '2023-11-17'""",
        )
        assert hours == 24
    assert (
        _count(
            con, "select count(*) from factors.grid_intensity_hourly where market_g_co2e_per_kwh is not null"
        )
        == 0
    )


def test_annual_means_match_the_shipped_hourly_files(shipped_con: duckdb.DuckDBPyConnection) -> None:
    """(a) rows of grid_annual.csv are the mean and 5th/95th percentiles of the shipped hourly files."""
    rows = shipped_con.execute(
        """
        select a.zone, a.year, a.location_g_co2e_per_kwh - h.mean, a.low_g_co2e_per_kwh - h.p05,
               a.high_g_co2e_per_kwh - h.p95
        from factors.grid_intensity_annual a
        join (
            select zone, year(datetime_utc) as year, avg(location_g_co2e_per_kwh) as mean,
                   quantile_cont(location_g_co2e_per_kwh, 0.05) as p05,
                   quantile_cont(location_g_co2e_per_kwh, 0.95) as p95
            from factors.grid_intensity_hourly group by all
        ) h using (zone, year)
        """
    ).fetchall()
    assert len(rows) == 12
    for zone, year, *diffs in rows:
        assert all(abs(d) < 1e-3 for d in diffs), (zone, year, diffs)


@pytest.mark.shared_data
def test_annual_means_match_the_shared_source_files(shipped_con: duckdb.DuckDBPyConnection) -> None:
    require_shared_data(SHARED_EM)
    source = duckdb.sql(
        f"""
        select trim("Zone Id") as zone, year(cast("Datetime (UTC)" as timestamp)) as year,
               avg(cast("Carbon Intensity gCO₂eq/kWh (direct)" as double)) as mean, count(*) as n
        from read_csv('{SHARED_EM}/*_hourly.csv', all_varchar = true, header = true) group by all
        """
    ).fetchall()
    assert len(source) == 12
    for zone, year, mean, n in source:
        shipped = shipped_con.execute(
            "select location_g_co2e_per_kwh from factors.grid_intensity_annual where zone = $z and year = $y",
            {"z": zone, "y": year},
        ).fetchone()
        assert shipped is not None and abs(shipped[0] - mean) < 1e-3, (zone, year)
        assert (
            _count(
                shipped_con,
                f"select count(*) from factors.grid_intensity_hourly where zone = '{zone}' and year(datetime_utc) = {year}",
            )
            == n
        )


# --------------------------------------------------------------------------------------------------------------
# User overrides
# --------------------------------------------------------------------------------------------------------------


def test_user_override_replaces_exactly_its_key(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    base = load_factors(con, tmp_path / "none", small_shipped)
    before = {t: _count(con, f"select count(*) from factors.{t}") for t in TABLES}
    fr_before = con.execute("select ewif_l_per_kwh from factors.water_intensity where zone = 'FR'").fetchone()

    inputs = _user(tmp_path, "water.csv", "zone,ewif_l_per_kwh\nUS,2.5\nXX-NEW,1.0\n")
    _user(
        tmp_path,
        "grid_intensity/mine.csv",
        "zone,datetime_utc,location_g_co2e_per_kwh\nUS-CAL-CISO,2023-11-16T18:00:00Z,123.4\n",
    )
    _user(
        tmp_path,
        "datacenter.csv",
        "provider,pue,source,licence,version\ndefault,1.2,my PUE report,internal,2025\n",
    )
    _user(tmp_path, "models.yml", "models:\n  - model: llama2-70b\n    training_kg_co2e: 1000\n")
    summaries = load_factors(con, inputs, small_shipped)

    after = {t: _count(con, f"select count(*) from factors.{t}") for t in TABLES}
    assert after["water_intensity"] == before["water_intensity"] + 1  # US replaced, XX-NEW added
    assert after["grid_intensity_hourly"] == before["grid_intensity_hourly"]
    assert after["datacenter"] == before["datacenter"] and after["models"] == before["models"]
    us = con.execute(
        "select ewif_l_per_kwh, origin, source, licence, version, source_file, source_row "
        "from factors.water_intensity where zone = 'US'"
    ).fetchone()
    assert us == (2.5, "user", "user file factors/water.csv", None, None, "factors/water.csv", 2)
    assert (
        con.execute("select ewif_l_per_kwh from factors.water_intensity where zone = 'FR'").fetchone()
        == fr_before
    )
    hour = con.execute(
        "select location_g_co2e_per_kwh, origin from factors.grid_intensity_hourly "
        "where zone = 'US-CAL-CISO' and datetime_utc = '2023-11-16 18:00:00'"
    ).fetchone()
    assert hour == (123.4, "user")
    assert _count(con, "select count(*) from factors.grid_intensity_hourly where origin = 'user'") == 1
    assert con.execute(
        "select pue, source, licence, version from factors.datacenter where provider = 'default'"
    ).fetchone() == (1.2, "my PUE report", "internal", "2025")
    # the user's 'llama2-70b' has the key of the shipped 'Llama-2-70B' and replaces it; the aliases follow
    model = con.execute(
        f"select model, training_kg_co2e, origin from factors.models where {MODEL_KEY_SQL.format(col='model')} = 'llama270b'"
    ).fetchall()
    assert model == [("llama2-70b", 1000.0, "user")]
    assert con.execute(
        "select model, origin from factors.model_aliases where alias_key = 'llama270b'"
    ).fetchone() == ("llama2-70b", "user")
    assert _count(con, "select count(*) from factors.model_aliases where alias_key = 'llama270bchathf'") == 0
    assert not summaries["water_intensity"].shipped_defaults_only
    assert (
        summaries["water_intensity"].loaded_user == 2 and summaries["water_intensity"].overridden_shipped == 1
    )
    assert summaries["hardware"].shipped_defaults_only
    assert base["water_intensity"].loaded_shipped == before["water_intensity"]


def test_reload_is_idempotent(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(tmp_path, "water.csv", "zone,ewif_l_per_kwh\nUS,2.5\nUS,3.0\n")
    first = load_factors(con, inputs, small_shipped)
    counts = {t: _count(con, f"select count(*) from factors.{t}") for t in TABLES}
    rejected = _count(con, "select count(*) from raw.rejected_rows")
    # the same rows with a trailing blank line: the file changed, so the load runs again and replaces
    (inputs / "factors" / "water.csv").write_text("zone,ewif_l_per_kwh\nUS,2.5\nUS,3.0\n\n")
    second = load_factors(con, inputs, small_shipped)
    assert all(v.reloaded for v in second.values())
    assert {t: _count(con, f"select count(*) from factors.{t}") for t in TABLES} == counts
    assert _count(con, "select count(*) from raw.rejected_rows") == rejected == 1
    assert {k: (v.loaded, v.rejected) for k, v in first.items()} == {
        k: (v.loaded, v.rejected) for k, v in second.items()
    }


def test_unchanged_inputs_keep_the_stored_tables(tmp_path: Path, small_shipped: Path) -> None:
    """Every daily run calls the loader; when its files are those of the last load it keeps the stored tables and
    returns the stored summaries. Any change of the inputs, or a table emptied since, loads again."""
    con = _con(tmp_path)
    inputs = _user(tmp_path, "water.csv", "zone,ewif_l_per_kwh\nUS,2.5\nUS,3.0\n")
    first = load_factors(con, inputs, small_shipped)
    assert all(v.reloaded and v.loaded_at for v in first.values())
    state = con.execute("select fingerprint, loaded_at from factors.load_state").fetchall()
    assert len(state) == 1

    kept = load_factors(con, inputs, small_shipped)
    assert not any(v.reloaded for v in kept.values())
    assert {k: (v.loaded, v.loaded_shipped, v.loaded_user, v.rejected, v.rejected_by_reason, v.files, v.loaded_at)
            for k, v in kept.items()} == {
        k: (v.loaded, v.loaded_shipped, v.loaded_user, v.rejected, v.rejected_by_reason, v.files, v.loaded_at)
        for k, v in first.items()
    }
    assert con.execute("select fingerprint, loaded_at from factors.load_state").fetchall() == state

    # an edited user file
    _user(tmp_path, "water.csv", "zone,ewif_l_per_kwh\nUS,4.5\n")
    edited = load_factors(con, inputs, small_shipped)
    assert edited["water_intensity"].reloaded and edited["water_intensity"].rejected == 0
    assert con.execute("select ewif_l_per_kwh from factors.water_intensity where zone = 'US'").fetchone() == (4.5,)
    assert _count(con, "select count(*) from raw.rejected_rows where input like 'factors/%'") == 0

    # a new file in a folder (hourly grid)
    _user(
        tmp_path,
        "grid_intensity/mine.csv",
        "zone,datetime_utc,location_g_co2e_per_kwh\nUS-CAL-CISO,2023-11-16T18:00:00Z,123.4\n",
    )
    added = load_factors(con, inputs, small_shipped)
    assert added["grid_intensity_hourly"].reloaded and added["grid_intensity_hourly"].loaded_user == 1

    # a table emptied by hand
    assert not any(v.reloaded for v in load_factors(con, inputs, small_shipped).values())
    hourly = _count(con, "select count(*) from factors.grid_intensity_hourly")
    con.execute("delete from factors.hardware")
    restored = load_factors(con, inputs, small_shipped)
    assert restored["hardware"].reloaded and restored["hardware"].loaded == first["hardware"].loaded
    assert _count(con, "select count(*) from factors.hardware") == first["hardware"].loaded
    assert _count(con, "select count(*) from factors.grid_intensity_hourly") == hourly

    # the user's files removed: the shipped defaults alone
    shutil.rmtree(inputs / "factors")
    shipped_only = load_factors(con, inputs, small_shipped)
    assert shipped_only["water_intensity"].reloaded and shipped_only["water_intensity"].shipped_defaults_only
    assert _count(con, "select count(*) from factors.water_intensity where origin = 'user'") == 0


def test_other_inputs_rejections_are_kept(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    load_factors(con, tmp_path / "none", small_shipped)
    con.execute("insert into raw.rejected_rows values (null, 'requests', 'x.jsonl', 1, 'bad', '{}', now())")
    load_factors(con, tmp_path / "none", small_shipped)
    assert _count(con, "select count(*) from raw.rejected_rows where input = 'requests'") == 1


# --------------------------------------------------------------------------------------------------------------
# Bad rows
# --------------------------------------------------------------------------------------------------------------


def test_bad_hourly_rows_are_rejected_and_the_rest_loads(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(
        tmp_path,
        "grid_intensity/bad.csv",
        "zone,datetime_utc,location_g_co2e_per_kwh,estimated\n"
        "ZZ,2024-01-01T00:00:00Z,100,false\n"  # 2 good
        "ZZ,2024-01-01 01:00:00,100,false\n"  # 3 no offset
        "ZZ,2024-01-01T02:30:00Z,100,false\n"  # 4 not on the hour
        "ZZ,2024-01-01T03:00:00Z,abc,false\n"  # 5 unparseable number
        "ZZ,2024-01-01T04:00:00Z,-5,false\n"  # 6 negative
        "ZZ,2024-01-01T00:00:00Z,120,false\n"  # 7 duplicate of line 2
        "ZZ,1704081600,90,true\n"  # 8 good: epoch seconds 2024-01-01T04:00Z
        "ZZ,2024-01-01T05:00:00+01:00,80,maybe\n"  # 9 bad boolean
        ",2024-01-01T06:00:00Z,80,false\n",  # 10 missing zone
    )
    summary = load_factors(con, inputs, small_shipped)["grid_intensity_hourly"]
    loaded = con.execute(
        "select datetime_utc, location_g_co2e_per_kwh from factors.grid_intensity_hourly where zone = 'ZZ' order by 1"
    ).fetchall()
    assert [(str(t), v) for t, v in loaded] == [("2024-01-01 00:00:00", 100.0), ("2024-01-01 04:00:00", 90.0)]
    reasons = dict(_rejects(con, "grid_intensity_hourly"))
    assert "without UTC offset" in reasons[3]
    assert "is not on the hour" in reasons[4] and "datetime_utc" in reasons[4]
    assert reasons[5] == "unparseable location_g_co2e_per_kwh 'abc'"
    assert reasons[6] == "negative location_g_co2e_per_kwh (-5.0)"
    assert reasons[7].startswith("duplicate key (zone, datetime_utc)") and "bad.csv:2" in reasons[7]
    assert "unparseable estimated" in reasons[9] and "'maybe'" in reasons[9]
    assert reasons[10] == "missing zone"
    assert summary.rejected == 7 and summary.loaded_user == 2
    raw = con.execute("select raw_record, source_file from raw.rejected_rows where source_row = 5").fetchone()
    assert raw == ("ZZ,2024-01-01T03:00:00Z,abc,false", "factors/grid_intensity/bad.csv")


def test_hourly_gzip_and_parquet_user_files(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = tmp_path / "inputs"
    folder = inputs / "factors" / "grid_intensity"
    folder.mkdir(parents=True)
    with gzip.open(folder / "a.csv.gz", "wt") as fh:
        fh.write("zone,datetime_utc,location_g_co2e_per_kwh\nQQ,2024-02-01T00:00:00Z,50\n")
    con.execute(
        f"""copy (select 'QQ' as zone, timestamp '2024-02-01 01:00:00' as datetime_utc, 60.0 as location_g_co2e_per_kwh
            union all select 'QQ', timestamp '2024-02-01 01:30:00', 70.0)
            to '{folder / "b.parquet"}' (format parquet)"""
    )
    load_factors(con, inputs, small_shipped)
    assert _count(con, "select count(*) from factors.grid_intensity_hourly where zone = 'QQ'") == 2
    assert [r[0] for r in _rejects(con, "grid_intensity_hourly")] == [2]


def test_bad_band_and_pue_rows(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(
        tmp_path,
        "datacenter.csv",
        "provider,pue,pue_low,pue_high\nok,1.3,1.2,1.4\nlow,0.9,,\nband,1.3,1.5,\nhigh,1.3,,1.1\n",
    )
    _user(
        tmp_path,
        "water.csv",
        "zone,ewif_l_per_kwh,low_l_per_kwh,high_l_per_kwh\nAA,1.0,0.5,2\nBB,1.0,1.5,2\nCC,1.0,0.5,0.7\nDD,x1,,\n",
    )
    _user(
        tmp_path,
        "hardware.csv",
        "component,hardware,embodied_kg_co2e,lifetime_years\ngpu,B200,500,4\ncpu,x,1,1\n",
    )
    load_factors(con, inputs, small_shipped)
    assert _count(con, "select count(*) from factors.datacenter where origin = 'user'") == 1
    dc = dict(_rejects(con, "datacenter"))
    assert dc[3] == "pue (0.9) is below 1 (PUE = facility / IT energy)"
    assert dc[4] == "pue_low (1.5) is above pue (1.3)"
    assert dc[5] == "pue_high (1.1) is below pue (1.3)"
    water = dict(_rejects(con, "water_intensity"))
    assert water[3] == "low_l_per_kwh (1.5) is above ewif_l_per_kwh (1.0)"
    assert water[4] == "high_l_per_kwh (0.7) is below ewif_l_per_kwh (1.0)"
    assert water[5] == "unparseable ewif_l_per_kwh 'x1'"
    assert dict(_rejects(con, "hardware"))[3] == "component 'cpu' is not gpu or server"
    assert _count(con, "select count(*) from factors.hardware where hardware = 'B200'") == 1


def test_file_missing_a_required_column_is_rejected(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(tmp_path, "water.csv", "zone,water_per_kwh\nUS,2.0\n")
    summary = load_factors(con, inputs, small_shipped)["water_intensity"]
    (row,) = _rejects(con, "water_intensity")
    assert row[0] == 1 and row[1].startswith(
        "missing required column ewif_l_per_kwh (columns: zone, water_per_kwh)"
    )
    assert summary.rejected == 1 and summary.loaded_user == 0
    assert con.execute("select origin from factors.water_intensity where zone = 'US'").fetchone() == (
        "shipped",
    )


def test_malformed_models_yaml_entries(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(
        tmp_path,
        "models.yml",
        "models:\n"
        "  - model: my-model\n"  # line 2: good
        "    aliases: [org/My_Model-v1, Llama-2-7b]\n"
        "    training_kg_co2e: 10\n"
        "    service_start: 2024-01-01\n"
        "  - just a string\n"  # line 6
        "  - model: other\n"  # line 7
        "    colour: blue\n"
        "  - model: neg\n"  # line 9
        "    training_kg_co2e: -1\n"
        "  - model: date\n"  # line 11
        "    service_start: soon\n"
        "  - aliases: [x]\n",  # line 13: no model
    )
    summary = load_factors(con, inputs, small_shipped)["models"]
    reasons = dict(_rejects(con, "models"))
    assert reasons[6] == "malformed models.yml entry: not a mapping"
    assert reasons[7] == "malformed models.yml entry: unknown key colour"
    assert reasons[9] == "negative training_kg_co2e (-1.0)"
    assert reasons[11] == "unparseable service_start (YYYY-MM-DD expected) 'soon'"
    assert reasons[13] == "missing model"
    assert summary.loaded_user == 1
    mine = con.execute("select service_start, origin from factors.models where model = 'my-model'").fetchone()
    assert str(mine[0]) == "2024-01-01" and mine[1] == "user"
    aliases = dict(
        con.execute("select alias_key, model from factors.model_aliases where origin = 'user'").fetchall()
    )
    # the user's alias 'Llama-2-7b' wins over the shipped model of that name (user first)
    assert aliases == {"mymodel": "my-model", "mymodelv1": "my-model", "llama27b": "my-model"}
    assert (
        _count(con, "select count(*) from factors.model_aliases group by alias_key order by 1 desc limit 1")
        == 1
    )


def test_unparseable_yaml_is_one_rejected_row(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(tmp_path, "models.yml", "models: [unclosed\n")
    summary = load_factors(con, inputs, small_shipped)["models"]
    ((_row, reason),) = _rejects(con, "models")
    assert reason.startswith("malformed YAML")
    # a file none of whose rows could be read is named in the summary (the run summary warns about it)
    assert summary.files_rejected == {"factors/models.yml": reason}
    assert _count(con, "select count(*) from factors.models where origin = 'shipped'") >= 3


MODELS_LIST_FORM = """\
models:
  - model: my-model
    aliases: [org/My_Model-v1]
    training_kg_co2e: 1000
    fine_tuning_kg_co2e: 10
    projected_lifetime_inferences: 1.0e+6
    service_start: 2024-01-01
    service_months: 12
  - model: llama2-70b
    training_kg_co2e: 5
"""
MODELS_MAPPING_FORM = """\
models:
  my-model:
    aliases: [org/My_Model-v1]
    training_kg_co2e: 1000
    fine_tuning_kg_co2e: 10
    projected_lifetime_inferences: 1.0e+6
    service_start: 2024-01-01
    service_months: 12
  Llama-2-70B:
    model: llama2-70b  # the same model (key llama270b): allowed
    training_kg_co2e: 5
  other:
    model: something-else  # which one? refused
    training_kg_co2e: 1
"""


def test_models_yaml_mapping_form_loads_like_the_list_form(tmp_path: Path, small_shipped: Path) -> None:
    """`models: {name: {...}}` (a mapping keyed by model name) gives the same factor rows, aliases and so the same
    training carbon as the list form; an entry whose `model` names another model than its key is refused."""
    tables = {}
    for form, text in (("list", MODELS_LIST_FORM), ("mapping", MODELS_MAPPING_FORM)):
        con = _con(tmp_path, f"{form}.duckdb")
        inputs = _user(tmp_path / form, "models.yml", text)
        summary = load_factors(con, inputs, small_shipped)["models"]
        assert summary.files_rejected == {}
        tables[form] = (
            con.execute(
                "select * exclude (source_file, source_row, model) , lower(model) from factors.models "
                "order by all"
            ).fetchall(),
            con.execute("select alias_key, lower(model), origin from factors.model_aliases order by all").fetchall(),
            summary.loaded_user,
            _rejects(con, "models"),
        )
        con.close()
    listed, mapped = tables["list"], tables["mapping"]
    assert listed[2] == mapped[2] == 2
    assert mapped[0] == listed[0] and mapped[1] == listed[1]
    assert listed[3] == []
    assert mapped[3] == [(12, "malformed models.yml entry: listed under 'other' but names model 'something-else'")]
    training = [r for r in mapped[0] if r[-1] == "my-model"]
    assert len(training) == 1 and 1000.0 in training[0]


def test_models_yaml_without_models_is_rejected_whole(tmp_path: Path, small_shipped: Path) -> None:
    con = _con(tmp_path)
    inputs = _user(tmp_path, "models.yml", "model: my-model\ntraining_kg_co2e: 10\n")
    summary = load_factors(con, inputs, small_shipped)["models"]
    ((row, reason),) = _rejects(con, "models")
    assert row is None and reason.startswith("models.yml has no top-level 'models:' list or mapping")
    assert summary.files_rejected == {"factors/models.yml": reason} and summary.loaded_user == 0


# --------------------------------------------------------------------------------------------------------------
# Model names
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("meta-llama/Llama-2-70b-chat-hf", "llama270bchathf"),
        ("llama2-70b", "llama270b"),
        ("Llama-2-70B", "llama270b"),
        ("  Llama 2 70B ", "llama270b"),
        ("hf/meta-llama/Llama-3.1-8B-Instruct", "llama318binstruct"),
        ("mistralai/Mistral-7B-Instruct-v0.1", "mistral7binstructv01"),
    ],
)
def test_model_key_python_and_sql_agree(name: str, key: str) -> None:
    assert model_key(name) == key
    assert duckdb.execute(f"select {MODEL_KEY_SQL.format(col='$n')}", {"n": name}).fetchall() == [(key,)]
