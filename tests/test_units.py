"""Fast tests of pure functions: dbt arguments, CLI helpers, sensor bookkeeping, cluster validation."""

import datetime as dt
import json

import pytest

from orchestration.cli import CliError, days_to_run, format_table
from orchestration.defs.automation.sensors import changed_files
from orchestration.defs.resources import dbt_vars
from orchestration.defs.transform.assets import dbt_build_args
from orchestration.lib.ingestion.ingest import parse_clusters_yaml


def test_dbt_vars_defaults_and_overrides():
    assert dbt_vars() == {}
    assert dbt_vars(window_s=30, dynamic_share="tokens", attribution_level="gpu") == {
        "window_s": 30,
        "dynamic_share": "tokens",
        "attribution_level": "gpu",
    }


@pytest.mark.parametrize(
    "kwargs", [{"window_s": 0}, {"dynamic_share": "flops"}, {"attribution_level": "rack"}]
)
def test_dbt_vars_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        dbt_vars(**kwargs)


def test_dbt_build_args_exclude_unit_tests_and_pass_vars_as_json():
    assert dbt_build_args({}) == ["build", "--exclude-resource-type", "unit_test"]
    args = dbt_build_args({"window_s": 30})
    assert json.loads(args[args.index("--vars") + 1]) == {"window_s": 30}


def test_days_to_run():
    found = [dt.date(2024, 5, 1), dt.date(2024, 5, 3)]
    assert days_to_run(found, None, None) == found
    assert days_to_run(found, dt.date(2024, 5, 2), None) == [dt.date(2024, 5, 3)]
    assert days_to_run(found, dt.date(2024, 5, 1), dt.date(2024, 5, 3)) == [
        dt.date(2024, 5, 1),
        dt.date(2024, 5, 2),
        dt.date(2024, 5, 3),
    ]
    with pytest.raises(CliError):
        days_to_run(found, dt.date(2024, 5, 3), dt.date(2024, 5, 1))


def test_format_table_aligns_columns():
    out = format_table(("a", "value"), [("x", 1234.5), ("long", 2)]).splitlines()
    assert out[0].startswith("a   ") and "1,234.500" in out[2] and out[3].endswith("2")
    assert len({len(line) for line in out}) == 1


def test_changed_files():
    assert changed_files({"a": "1:1", "b": "1:1"}, {"a": "1:1", "b": "2:1", "c": "1:1"}) == ["b", "c"]
    assert changed_files({"a": "1:1"}, {"a": "1:1"}) == []


def test_clusters_yaml_validation_names_each_problem():
    text = """
clusters:
  - {id: ok, region: R, gpu_model: A100, gpus_per_node: 8, host_idle_w: 100, host_max_w: 400}
  - {id: ok, region: R, gpu_model: A100, gpus_per_node: 8, host_idle_w: 100, host_max_w: 400}
  - {id: neg, region: R, gpu_model: A100, gpus_per_node: 8, host_idle_w: -1, host_max_w: 400}
  - {id: inv, region: R, gpu_model: A100, gpus_per_node: 8, host_idle_w: 500, host_max_w: 400}
  - {id: str, region: R, gpu_model: A100, gpus_per_node: eight, host_idle_w: 1, host_max_w: 4}
  - {id: lvl, region: R, gpu_model: A100, gpus_per_node: 8, host_idle_w: 1, host_max_w: 4, attribution_level: rack}
  - {region: R}
"""
    valid, rejected = parse_clusters_yaml(text)
    assert [c["id"] for c in valid] == ["ok"]
    reasons = {index: reason for index, reason, _ in rejected}
    assert reasons[2].startswith("duplicate cluster id 'ok'")
    assert reasons[3] == "negative host_idle_w (-1)"
    assert "below host_idle_w" in reasons[4]
    assert reasons[5] == "non-numeric gpus_per_node 'eight'"
    assert "attribution_level 'rack'" in reasons[6]
    assert reasons[7].startswith("missing id")


def test_clusters_yaml_malformed():
    valid, rejected = parse_clusters_yaml("clusters: [unclosed")
    assert valid == [] and rejected[0][1].startswith("malformed YAML")
    valid, rejected = parse_clusters_yaml("something: else")
    assert valid == [] and "no top-level 'clusters:'" in rejected[0][1]


def test_console_script_returns_main_code_and_freezes_the_heap(monkeypatch):
    import gc

    from orchestration import cli

    monkeypatch.setattr(cli, "main", lambda: 3)
    try:
        assert cli.console_main() == 3
        assert gc.get_freeze_count() > 0  # the shutdown's collections skip the run's objects
    finally:
        gc.unfreeze()
