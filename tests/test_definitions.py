"""Snapshot of what a user sees in the UI: asset keys by group, jobs, schedule cron, sensors, checks."""

from orchestration.definitions import defs
from orchestration.lib import preload

EXPECTED_KEYS = {
    "raw": {"raw/clusters", "raw/requests", "raw/telemetry_samples", "raw/telemetry_series"},
    "factors": {
        "factors/grid_intensity_hourly",
        "factors/grid_intensity_annual",
        "factors/water_intensity",
        "factors/datacenter",
        "factors/hardware",
        "factors/gpu_power",
        "factors/models",
        "factors/model_aliases",
        "factors/image_quality",
    },
    "staging": {
        "staging/stg_raw__clusters",
        "staging/stg_raw__requests",
        "staging/stg_raw__telemetry_samples",
        "staging/stg_raw__telemetry_series",
        "staging/stg_factors__grid_intensity_hourly",
        "staging/stg_factors__grid_intensity_annual",
        "staging/stg_factors__water_intensity",
        "staging/stg_factors__datacenter",
        "staging/stg_factors__hardware",
        "staging/stg_factors__gpu_power",
        "staging/stg_factors__models",
    },
    "intermediate": {
        "intermediate/int_cluster_day_params",
        "intermediate/int_telemetry_intervals",
        "intermediate/int_telemetry_windows",
        "intermediate/int_pool_window_energy",
        "intermediate/int_request_window_overlaps",
        "intermediate/int_request_days",
        "intermediate/int_cluster_day_pools",
        "intermediate/int_pool_window_load",
        "intermediate/int_model_day_volumes",
        "intermediate/int_model_training_rates",
        "intermediate/int_cluster_day_factors",
        "intermediate/int_cluster_hour_intensity",
        "intermediate/int_pool_window_impact",
        "intermediate/int_request_pools",
        "intermediate/int_telemetry_quarantine",
    },
    "marts": {
        "marts/fct_window_energy",
        "marts/fct_request_energy",
        "marts/fct_cluster_energy_daily",
        "marts/fct_request_impact",
        "marts/fct_cluster_impact_daily",
        "marts/agg_impact_daily",
        "marts/dim_model_training_rates",
    },
    "models": {
        "models/energy_model_fits",
        "models/energy_model_anova",
        "models/model_comparison",
        "models/request_predictions",
        "models/fit_sample_days",
        "models/image_model_fits",
    },
    "comparisons": {"marts/cmp_ecologits", "marts/cmp_ecologits_day_combos", "marts/cmp_ecologits_day_bins"},
    "reports": {"reports/daily_report"},
    "operations": {"operations/published_day", "operations/published_models", "operations/published_advice",
                   "operations/retention"},
    "advice": {
        "advice/routing_frontier",
        "advice/routing_plan",
        "advice/routing_candidates",
        "advice/rightsizing_hourly",
        "advice/rightsizing_daily",
        "advice/shifting_daily",
        "advice/settings",
        "advice/summary",
    },
}


def _specs():
    d = defs()
    return d, {spec.key.to_user_string(): spec for spec in d.resolve_all_asset_specs()}


def test_asset_keys_and_groups():
    _, specs = _specs()
    by_group: dict[str, set[str]] = {}
    for key, spec in specs.items():
        by_group.setdefault(spec.group_name, set()).add(key)
    for group, keys in EXPECTED_KEYS.items():
        assert by_group.get(group) == keys, group


def test_every_asset_has_owner_kind_and_description():
    _, specs = _specs()
    for key, spec in specs.items():
        assert spec.owners, key
        assert spec.kinds, key
        assert spec.description, key


def test_lineage_raw_to_marts():
    _, specs = _specs()
    deps = {key: {d.asset_key.to_user_string() for d in spec.deps} for key, spec in specs.items()}
    assert "raw/requests" in deps["staging/stg_raw__requests"]
    assert "raw/telemetry_samples" in deps["staging/stg_raw__telemetry_samples"]
    assert "intermediate/int_request_days" in deps["marts/fct_request_energy"]
    assert "marts/fct_window_energy" in deps["marts/fct_cluster_energy_daily"]
    assert "factors/grid_intensity_hourly" in deps["staging/stg_factors__grid_intensity_hourly"]
    assert "intermediate/int_request_days" in deps["marts/fct_request_impact"]
    assert "intermediate/int_model_training_rates" in deps["intermediate/int_request_days"]
    assert "intermediate/int_model_day_volumes" in deps["intermediate/int_model_training_rates"]
    assert "intermediate/int_model_training_rates" in deps["marts/dim_model_training_rates"]


def test_jobs_schedules_sensors_checks():
    d, _ = _specs()
    job = d.resolve_job_def("impact_daily")
    assert job.partitions_def is not None
    schedule = d.resolve_schedule_def("impact_daily_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert d.resolve_schedule_def("impact_models_schedule").cron_schedule == "0 3 * * *"
    # advice in its own job after the models job (routing reads the latest fits; a bad advice.yml fails advice only)
    assert d.resolve_job_def("impact_advice").partitions_def is not None
    assert d.resolve_schedule_def("impact_advice_schedule").cron_schedule == "0 4 * * *"
    advice = {k.to_user_string() for k in d.resolve_job_def("impact_advice").asset_layer.executable_asset_keys}
    assert advice == EXPECTED_KEYS["advice"] | {"operations/published_advice"}  # and its publication
    assert not advice & {k.to_user_string() for k in d.resolve_job_def("impact_daily").asset_layer.executable_asset_keys}
    assert d.resolve_sensor_def("impact_new_input_files").job_name == "impact_daily"
    check_names = {key.name for key in d.resolve_asset_graph().asset_check_keys}
    assert {"energy_conservation", "no_negative_energy", "telemetry_coverage", "single_request_rule"} <= check_names
    assert {"image_fit_quality", "image_coefficient_drift", "lora_factor_coverage"} <= check_names
    assert {"routing_frontier_consistent", "avoidable_within_idle", "shifting_never_negative"} <= check_names


def test_definitions_load_under_dagster_dev_without_the_venv_on_path():
    """`make ui` runs `dagster dev` from an un-activated venv: the code location must load with no dbt on PATH
    (dagster-dbt's prepare_if_dev() did not, and the UI showed an error instead of the asset graph)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "from orchestration.definitions import defs; print(len(list(defs().assets)))"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_definitions_load_without_the_model_libraries():
    """scipy, statsmodels and matplotlib cost 1.5-2 s of every start-up: only the models job imports them (the dbt
    step preloads them in the background, orchestration/lib/preload.py), not the definitions."""
    import subprocess
    import sys

    heavy = [m.split(".")[0] for m in preload.MODULES]
    code = (
        "import sys\nfrom orchestration.definitions import defs\ndefs()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_preload_imports_the_model_libraries_once():
    import sys

    first = preload.start()
    assert preload.start() is first  # one thread per process
    first.join(timeout=120)
    assert not first.is_alive()
    assert all(name in sys.modules for name in preload.MODULES)


def test_daily_assets_backfill_one_day_per_run_and_load_quietly():
    """A backfill launches one run per day (each replaces one day's rows), and loading the definitions, which
    every `impact run` does, prints no warning to the user's terminal (Dagster's beta notice for the policy
    parameter included)."""
    import subprocess
    import sys

    d, _ = _specs()
    graph = d.resolve_asset_graph()
    daily = [key for key in graph.materializable_asset_keys if graph.get(key).partitions_def is not None]
    assert daily
    for key in daily:
        policy = graph.get(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run == 1, key.to_user_string()

    # Python's default filters (what a user's terminal shows) plus DeprecationWarnings raised on our own code,
    # e.g. a Dagster parameter that will be removed; every module of the definitions imported directly, as
    # `impact run` imports the jobs module (defs() alone loads them with Dagster's own warnings suppressed)
    code = (
        "import importlib, pkgutil, warnings\n"
        "warnings.filterwarnings('default', category=DeprecationWarning, module='orchestration')\n"
        "import orchestration.defs as pkg\n"
        "for m in pkgutil.walk_packages(pkg.__path__, 'orchestration.defs.'):\n    importlib.import_module(m.name)\n"
        "from orchestration.definitions import defs\ndefs()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert "Warning" not in result.stderr, result.stderr[-3000:]


def test_each_job_ends_by_publishing_for_analysts_and_retention_is_scheduled():
    """The publication of a job waits for every other asset of the job (an asset added to a job must be added to
    the deps in defs/operations/assets.py, or analysts could get a version without it)."""
    d, _ = _specs()
    graph = d.resolve_asset_graph()
    for job_name, published in (("impact_daily", "operations/published_day"),
                                ("impact_models", "operations/published_models"),
                                ("impact_advice", "operations/published_advice")):
        job = d.resolve_job_def(job_name)
        selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
        assert published in selected, job_name
        upstream = {key.to_user_string() for key in graph.upstream_key_iterator(
            next(k for k in graph.materializable_asset_keys if k.to_user_string() == published))}
        missing = selected - upstream - {published}
        assert not missing, f"{job_name}: {published} does not wait for {sorted(missing)}"
    assert d.resolve_job_def("impact_retention") is not None
    assert d.resolve_schedule_def("impact_retention_schedule").cron_schedule == "30 3 * * *"
