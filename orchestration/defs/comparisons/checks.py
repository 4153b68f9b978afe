"""Check on marts.cmp_ecologits: is our accelerator energy per output token plausible against ML.ENERGY's
measurements of the same (or a same-size) model on the nearest GPU class?"""

import dagster as dg
import pandas as pd

from orchestration.defs.comparisons.assets import CMP_ECOLOGITS_KEY, CMP_TABLE
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import ecologits_cmp, engines
from orchestration.lib.check_messages import mlenergy_advice

MLENERGY_CHECK = "mlenergy_plausibility"

DETAIL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "s"),
    ("hardware", "hardware", "s"),
    ("mlenergy_model", "ML.ENERGY model", "s"),
    ("mlenergy_match", "match", "s"),
    ("mlenergy_gpu", "ML.ENERGY GPU", "s"),
    ("ours_accelerator_j_per_output_token", "ours J/tok", ".3g"),
    ("mlenergy_j_per_token_best", "best J/tok", ".3g"),
    ("mlenergy_best_batch", "at max batch", ".4g"),
    ("mlenergy_j_per_token_smallest_batch", "smallest-batch J/tok", ".3g"),
    ("mlenergy_smallest_batch", "smallest max batch", ".4g"),
    ("mlenergy_batch1_bound_j_per_token", "batch-1 bound", ".3g"),
    ("mlenergy_band_low_j_per_token", "band low", ".3g"),
    ("mlenergy_band_high_j_per_token", "band high", ".3g"),
    ("mlenergy_verdict", "verdict", "s"),
)


def _read(settings: ImpactSettings) -> pd.DataFrame:
    con = settings.open_engine()
    try:
        return con.execute(f"select * from {CMP_TABLE}").df() if engines.has_table(con, CMP_TABLE) else pd.DataFrame()
    finally:
        con.close()


@dg.asset_check(asset=CMP_ECOLOGITS_KEY, name=MLENERGY_CHECK)
def mlenergy_plausibility(settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a model's accelerator energy per output token (GPU idle + dynamic share, over the trailing 28
    days) lies outside ML.ENERGY v2's plausibility band for the same model (matched by model_key) or, failing that,
    a chat model of the same architecture within 15 % of its size, on the nearest GPU class (A100 or H100). Band:
    [best-batched measured J/token / 1.5, batch-1 bound x 1.5], where the batch-1 bound = the J/token of the
    smallest batch measured x its average batch size (a decode step at batch 1 is no longer and no more
    power-hungry than at batch b). Above the band usually means idle capacity dominates (an under-used
    cluster); below it, energy is missing from the attribution."""
    cmp = _read(settings)
    compared = cmp[cmp["mlenergy_verdict"].notna()] if len(cmp) else cmp
    bad = ecologits_cmp.mlenergy_offenders(cmp)
    return dg.AssetCheckResult(
        passed=bool(len(bad) == 0),
        severity=dg.AssetCheckSeverity.WARN,
        description=mlenergy_advice(bad),
        metadata={
            "rows_compared": len(compared),
            "rows_outside_band": len(bad),
            "widen_factor": ecologits_cmp.MLENERGY_WIDEN_FACTOR,
            "source": ecologits_cmp.MLENERGY_SOURCE,
            "figures": dg.MetadataValue.md(
                ecologits_cmp.to_markdown(cmp, DETAIL_COLUMNS) if len(cmp) else "no comparison rows"
            ),
        },
    )
