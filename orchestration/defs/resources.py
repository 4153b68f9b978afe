"""Resources shared by every asset: the impact settings (paths, limits) and the dbt CLI."""


import hashlib
import os
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from orchestration import settings
from orchestration.dbt_manifest import dbt_executable, prepare_manifest
from orchestration.lib.ingest import DEFAULT_MAX_REQUEST_DURATION_S, DEFAULT_TELEMETRY_MARGIN_S

DBT_PROJECT = DbtProject(project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR)
if os.environ.get("DAGSTER_IS_DEV_CLI"):
    # Under `dagster dev` (make ui), re-parse when the dbt project changed, with the venv's dbt: dagster-dbt's own
    # prepare_if_dev() looks for `dbt` on PATH, which an un-activated venv does not provide.
    prepare_manifest()


class ImpactSettings(dg.ConfigurableResource):
    """Where the inputs and the warehouse are, and the limits ingestion and attribution apply.

    Paths are resolved to absolute paths; the warehouse path is exported as IMPACT_WAREHOUSE so the dbt subprocess
    writes the same DuckDB file (DuckDB has one writer: runs are queued one at a time, see dagster_home/).
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

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ[settings.WAREHOUSE_ENV] = str(self.warehouse_path)

    def dbt_vars(self) -> dict[str, object]:
        return dbt_vars(
            window_s=self.window_s,
            dynamic_share=self.dynamic_share,
            attribution_level=self.attribution_level,
        )

    @property
    def dbt_target_path(self) -> Path:
        """dbt's target folder for this warehouse: stable across runs (so dbt parses partially, not fully, each
        day) and distinct per warehouse (so two warehouses never share one)."""
        digest = hashlib.sha256(str(self.warehouse_path).encode()).hexdigest()[:12]
        return settings.DBT_PROJECT_DIR / "target" / f"warehouse-{digest}"


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


def _env_or(name: str, default: Path) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else str(default)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "settings": ImpactSettings(
                data_dir=_env_or(settings.DATA_DIR_ENV, settings.DEFAULT_DATA_DIR),
                warehouse=_env_or(settings.WAREHOUSE_ENV, settings.DEFAULT_WAREHOUSE),
            ),
            "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable()),
        },
        executor=dg.in_process_executor,
    )
