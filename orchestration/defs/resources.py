"""Resources shared by every asset: the impact settings (paths, limits) and the dbt CLI."""


import importlib.metadata
import os
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from orchestration import settings
from orchestration.dbt_manifest import dbt_executable, prepare_manifest
from orchestration.lib import engines
from orchestration.lib.ingestion import prometheus as prom_api
from orchestration.lib.ingestion.ingest import DEFAULT_MAX_REQUEST_DURATION_S, DEFAULT_TELEMETRY_MARGIN_S
from orchestration.lib.ingestion.metrics import GPU_LABELS, NODE_LABELS
from orchestration.lib.operations import lock, publish
from orchestration.lib.operations.launcher import PARENT_ENV
from orchestration.lib.warehouse import MEMORY_LIMIT_ENV, check_temp_directory, memory_limit

DBT_PROJECT = DbtProject(project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR)
if os.environ.get("DAGSTER_IS_DEV_CLI"):
    # Under `dagster dev` (make ui), re-parse when the dbt project changed, with the venv's dbt: dagster-dbt's own
    # prepare_if_dev() looks for `dbt` on PATH, which an un-activated venv does not provide.
    prepare_manifest()


class ImpactDbtCliResource(DbtCliResource):
    """dagster-dbt's DbtCliResource without two start-up costs of every dbt invocation that this project does not
    need (about 8 s a day on the 2-core machine): `dbt --version` in a subprocess to learn the version of the dbt
    beside this Python (the venv's dbt-core, whose version the package metadata gives), and an in-process dbt
    adapter, which dagster-dbt only uses to fetch row counts and column metadata (partition_row_counts reads the
    counts itself, after dbt has released the warehouse)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):  # dagster-dbt's private hook
        return None


class ImpactSettings(dg.ConfigurableResource):
    """Where the inputs and the warehouse are, and the limits ingestion and attribution apply.

    Paths are resolved to absolute paths; the warehouse path is exported as IMPACT_WAREHOUSE so the dbt subprocess
    writes the same DuckDB file (DuckDB has one writer: runs are queued one at a time, see dagster_home/).

    Each run holds the warehouse's run lock while it executes (docs/operations.md): a run started meanwhile, from
    the schedule, a backfill or `impact run`, waits for it (IMPACT_LOCK_WAIT_S: at most that many seconds) and
    says in its log whose run it waits for.
    """

    data_dir: str
    warehouse: str
    max_request_duration_s: float = DEFAULT_MAX_REQUEST_DURATION_S
    telemetry_margin_s: float = DEFAULT_TELEMETRY_MARGIN_S
    coverage_warn_below: float = 0.95
    # model checks (issue 3): a fit warns below this uncentred R-squared or above this CV MAPE; a coefficient
    # warns when it moved by more than this many standard errors of the previous fit
    fit_min_r_squared_uncentered: float = 0.9
    fit_max_cv_mape: float = 0.25
    drift_k_standard_errors: float = 3.0
    window_s: float | None = None
    dynamic_share: str = "request_seconds"
    attribution_level: str | None = None
    # the engine the models run on (docs/spark.md): duckdb (the warehouse file above) or spark (the warehouse
    # directory spark_warehouse; `warehouse` is then ingestion's DuckDB store in it)
    engine: str = engines.DEFAULT_ENGINE
    spark_warehouse: str | None = None

    @property
    def is_spark(self) -> bool:
        return engines.engine_name(self.engine) == "spark"

    @property
    def lake_path(self) -> Path:
        """Where the raw layer's Parquet is written for the Spark engine."""
        return Path(self.spark_warehouse or self.warehouse_path.parent).expanduser().resolve() / "lake"

    def marts(self, con):
        """Where a Python step reads marts and writes its tables: the DuckDB warehouse connection ``con``, or the
        Spark engine (``con`` is then ingestion's DuckDB store, for raw.rejected_rows)."""
        return self.open_engine() if self.is_spark else con

    def open_engine(self, read_only: bool = True):
        """The warehouse the models wrote, for reading marts and writing the Python steps' small tables."""
        return engines.open_engine(self.engine, self.warehouse_path, read_only=read_only)

    def duckdb_only(self, what: str) -> str | None:
        """None on DuckDB; on the Spark engine, why ``what`` (a DuckDB-warehouse operation: the analysts'
        publication, retention, the daily report, advice) does not run there (docs/spark.md)."""
        if not self.is_spark:
            return None
        return (f"{what} is not run on the Spark engine: it reads and writes the DuckDB warehouse file, and Spark's "
                "tables are in its catalog (query them with `impact sql --engine spark` or your cluster's SQL "
                "endpoint; docs/spark.md, 'What runs on Spark')")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve()

    @property
    def published_path(self) -> Path:
        """The analysts' warehouse (lib/operations/publish.py)."""
        return publish.published_path(self.warehouse_path)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ[settings.WAREHOUSE_ENV] = str(self.warehouse_path)
        os.environ.setdefault(MEMORY_LIMIT_ENV, memory_limit())  # for dbt's profile too
        os.environ[PARENT_ENV] = str(os.getpid())  # dbt's launcher checks it still has this parent
        if context.run is not None:  # a run (not a sensor evaluation): the warehouse is written
            check_temp_directory(self.warehouse_path)
            _take_run_lock(context, self.warehouse_path)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is not None:
            lock.release(self.warehouse_path)

    def dbt_vars(self) -> dict[str, object]:
        return dbt_vars(
            window_s=self.window_s,
            dynamic_share=self.dynamic_share,
            attribution_level=self.attribution_level,
        )


def _take_run_lock(context: dg.InitResourceContext, warehouse: Path) -> None:
    run = context.run
    partition = run.tags.get("dagster/partition")
    command = f"Dagster run {run.run_id} of {run.job_name}" + (f" for {partition}" if partition else "")

    def waiting(holder: lock.Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        context.log.warning(f"waiting for the warehouse {warehouse}: in use by {who}")

    def stale(holder: lock.Holder) -> None:
        context.log.warning(f"took over the lock of a run that ended without releasing it ({holder.describe()})")

    lock.acquire(warehouse, wait_s=lock.wait_from_env(), command=command, on_wait=waiting, on_stale=stale)


def dbt_vars(
    window_s: float | None = None,
    dynamic_share: str = "request_seconds",
    attribution_level: str | None = None,
) -> dict[str, object]:
    """The `--vars` of the dbt builds: only settings that differ from dbt_project.yml's defaults. The partition day
    is not a var: it is passed as IMPACT_PARTITION_DAY, since a --vars change makes dbt re-parse everything."""
    if dynamic_share not in ("request_seconds", "tokens"):
        raise ValueError(f"dynamic_share must be request_seconds or tokens, not {dynamic_share!r}")
    if attribution_level not in (None, "cluster", "node", "gpu"):
        raise ValueError(f"attribution_level must be cluster, node or gpu, not {attribution_level!r}")
    out: dict[str, object] = {}
    if window_s is not None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, not {window_s}")
        out["window_s"] = window_s
    if dynamic_share != "request_seconds":
        out["dynamic_share"] = dynamic_share
    if attribution_level is not None:
        out["attribution_level"] = attribution_level
    return out


# --------------------------------------------------------------------------------------------------------------
# Prometheus (issue 5): telemetry pulled from a live server instead of telemetry/ files
# --------------------------------------------------------------------------------------------------------------


class PrometheusClusterLabels(dg.Config):
    """How to find one cluster's series when they carry no cluster label: PromQL label matchers without braces
    (e.g. `job="dcgm-west"`), and optionally this cluster's own node and GPU label aliases."""

    selector: str
    node_labels: list[str] | None = None
    gpu_labels: list[str] | None = None


class PrometheusResource(dg.ConfigurableResource):
    """A Prometheus server to pull raw telemetry samples from (lib/ingestion/prometheus.py). Empty `url`: telemetry comes
    from the telemetry/ files. The URL comes from IMPACT_PROMETHEUS_URL (or `impact run --prometheus-url`);
    credentials only from the environment: IMPACT_PROMETHEUS_TOKEN (bearer) or IMPACT_PROMETHEUS_USER and
    IMPACT_PROMETHEUS_PASSWORD (basic auth). They are sent in headers, never logged or put in metadata."""

    url: str = ""
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 0.5
    # seconds of samples per query; a chunk the server refuses as too big is split further
    chunk_s: float = prom_api.DEFAULT_CHUNK_S
    workers: int = 4
    # label mapping: cluster from `cluster_label`; node and GPU from the first label present of these aliases
    # (default: lib/ingestion/metrics.py NODE_LABELS, GPU_LABELS); `instance` loses its :port; per-cluster selectors for
    # series without a cluster label
    cluster_label: str = "cluster"
    node_labels: list[str] | None = None
    gpu_labels: list[str] | None = None
    strip_instance_port: bool = True
    clusters: dict[str, PrometheusClusterLabels] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url.strip())

    def client(self) -> prom_api.PrometheusClient:
        return prom_api.PrometheusClient(
            url=self.url,
            bearer_token=self.bearer_token or None,
            username=self.username or None,
            password=self.password or None,
            verify_tls=self.verify_tls,
            ca_bundle=self.ca_bundle or None,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
        )

    def mapping(self) -> prom_api.LabelMapping:
        return prom_api.LabelMapping(
            cluster_label=self.cluster_label,
            node_labels=tuple(self.node_labels or NODE_LABELS),
            gpu_labels=tuple(self.gpu_labels or GPU_LABELS),
            strip_instance_port=self.strip_instance_port,
            clusters=tuple(
                prom_api.ClusterSelector(
                    cluster=name,
                    matchers=c.selector,
                    node_labels=tuple(c.node_labels) if c.node_labels else None,
                    gpu_labels=tuple(c.gpu_labels) if c.gpu_labels else None,
                )
                for name, c in sorted((self.clusters or {}).items())
            ),
        )


def prometheus_resource() -> PrometheusResource:
    """The resource from the environment: each field that is set becomes a dg.EnvVar (resolved at run time, shown
    in the UI by name only); unset fields keep their defaults (no URL: files)."""
    env = {
        "url": prom_api.URL_ENV,
        "bearer_token": prom_api.TOKEN_ENV,
        "username": prom_api.USER_ENV,
        "password": prom_api.PASSWORD_ENV,
    }
    return PrometheusResource(**{k: dg.EnvVar(v) for k, v in env.items() if os.environ.get(v)})


def dbt_target() -> dict[str, str]:
    """The dbt profile of the engine: the project's `duckdb` or `spark` target, or a profile of your own
    (IMPACT_DBT_PROFILES_DIR and IMPACT_DBT_TARGET, e.g. a Databricks or Thrift connection: docs/spark.md)."""
    out = {}
    if os.environ.get(settings.DBT_PROFILES_DIR_ENV):
        out["profiles_dir"] = str(Path(os.environ[settings.DBT_PROFILES_DIR_ENV]).expanduser().resolve())
    target = os.environ.get(settings.DBT_TARGET_ENV) or ("spark" if engines.engine_name() == "spark" else "")
    if target:
        out["target"] = target
    return out


def _env_or(name: str, default: Path) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else str(default)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "settings": ImpactSettings(
                data_dir=_env_or(settings.DATA_DIR_ENV, settings.DEFAULT_DATA_DIR),
                warehouse=_env_or(settings.WAREHOUSE_ENV, settings.DEFAULT_WAREHOUSE),
                engine=engines.engine_name(),
                spark_warehouse=os.environ.get(settings.SPARK_WAREHOUSE_ENV) or None,
            ),
            "dbt": ImpactDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable(), **dbt_target()),
            "prometheus": prometheus_resource(),
        },
        executor=dg.in_process_executor,
    )
