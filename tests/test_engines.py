"""Unit tests of orchestration/lib/engines: the equality rule of the DuckDB/Spark comparison, parameters, settings."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from orchestration.lib import engines
from orchestration.lib.engines.equality import differences
from orchestration.lib.engines.spark_engine import spark_sql_params
from orchestration.lib.engines.spark_server import SparkServerError, extra_conf, server_conf


def frame(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


def test_equal_tables_in_any_row_and_column_order_are_equal():
    a = frame(request_id=["a", "b"], day=[dt.date(2024, 5, 1)] * 2, energy_j=[1.0, 2.0], n=[1, 2])
    b = frame(energy_j=[2.0 * (1 + 1e-12), 1.0], n=np.array([2, 1], dtype="int32"),
              day=pd.to_datetime(["2024-05-01"] * 2), request_id=["b", "a"])
    assert differences(a, b) == []


def test_values_beyond_1e9_relative_keys_and_shapes_are_differences():
    a = frame(request_id=["a", "b"], energy_j=[1.0, 2.0])
    assert differences(a, frame(request_id=["a", "b"], energy_j=[1.0, 2.0 * (1 + 1e-8)]))
    assert differences(a, frame(request_id=["a", "c"], energy_j=[1.0, 2.0]))
    assert differences(a, frame(request_id=["a"], energy_j=[1.0]))
    assert differences(a, frame(request_id=["a", "b"], energy_kwh=[1.0, 2.0]))
    # a value against a missing one is a difference; DuckDB's NaN and Spark's NULL are the same missing value
    assert differences(a, frame(request_id=["a", "b"], energy_j=[1.0, None]))
    assert differences(frame(x=[float("nan")]), frame(x=[None])) == []


def test_list_columns_compare_by_their_elements():
    # DuckDB gives a list column as Python lists, Spark as numpy arrays: the same adapters are equal, others not
    a = frame(request_id=["a", "b"], lora=[["x", "y"], None])
    b = frame(request_id=["b", "a"], lora=[None, np.array(["x", "y"], dtype=object)])
    assert differences(a, b) == []
    assert differences(a, frame(request_id=["a", "b"], lora=[["y", "x"], None]))


def test_missing_values_of_nullable_integer_and_boolean_columns_are_equal():
    # DuckDB gives a nullable integer column as pandas Int64 (missing: NA), Spark as floats with NaN
    a = frame(k=["a", "b"], n=pd.array([1, None], dtype="Int64"), ok=pd.array([True, None], dtype="boolean"))
    b = frame(k=["a", "b"], n=[1.0, float("nan")], ok=[True, None])
    assert differences(a, b) == []


def test_duckdb_parameters_become_spark_parameters():
    sql, args = spark_sql_params("select * from t where day = $day and d2 = $day2 and x = '$5'", {"day": 1, "day2": 2, "unused": 3})
    assert sql == "select * from t where day = :day and d2 = :day2 and x = '$5'"
    assert args == {"day": 1, "day2": 2}
    assert spark_sql_params("select ?", [dt.date(2024, 1, 1)]) == ("select ?", [dt.date(2024, 1, 1)])


def test_engine_names(monkeypatch):
    monkeypatch.delenv(engines.ENGINE_ENV, raising=False)
    assert engines.engine_name() == "duckdb"
    monkeypatch.setenv(engines.ENGINE_ENV, "Spark")
    assert engines.engine_name() == "spark"
    with pytest.raises(ValueError, match="duckdb, spark"):
        engines.engine_name("postgres")


def test_local_server_binds_localhost_in_utc_with_its_metastore_in_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPACT_SPARK_CONF", "spark.sql.codegen.wholeStage=false")
    conf = server_conf(tmp_path, 15002)
    assert conf["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert str(tmp_path / "metastore_db") in conf["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert conf["spark.sql.codegen.wholeStage"] == "false"
    monkeypatch.setenv("IMPACT_SPARK_CONF", "oops")
    with pytest.raises(SparkServerError, match="key=value"):
        extra_conf()
