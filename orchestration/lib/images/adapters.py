"""LoRA adapters: which adapters the requests named that the factor tables cannot charge (docs/images.md).

An adapter is charged in ``fine_tuning_g_co2e`` (and its water in ``training_water_l``) at its own monthly rate x
the request's inferences when factors/models.yml has an entry for it (``base_model`` set). One without an entry is
not charged: int_request_days lists it in ``adapters_without_factor``, and the lora_factor_coverage check reports
it here, with the adapters whose ``base_model`` is not the model the request ran (an adapter trained for another
base model: probably a naming mistake).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from orchestration.lib.factors import MODEL_KEY_SQL

PROBLEMS_SQL = f"""
with used as (
    select r.model, unnest(r.lora) as adapter, r.adapters_without_factor
    from marts.fct_request_impact as r
    where r.lora is not null and ($day is null or r.day = $day)
),
named as (
    select u.*, m.factor_model, m.base_model
    from used as u
    left join staging.stg_factors__models as m on m.alias_key = {MODEL_KEY_SQL.format(col="u.adapter")}
)
select adapter,
    case
        when factor_model is null then 'no entry in factors/models.yml: not charged'
        when base_model is null then 'entry ' || factor_model || ' has no base_model (not declared as an adapter)'
        else 'base_model ' || base_model || ' is not the model of ' || count(*) || ' request(s): '
            || string_agg(distinct model, ', ')
    end as problem,
    count(*) as requests
from named
where factor_model is null or base_model is null
   or {MODEL_KEY_SQL.format(col="base_model")} <> {MODEL_KEY_SQL.format(col="model")}
group by adapter, factor_model, base_model
order by requests desc, adapter
"""


def adapter_problems(
    con: duckdb.DuckDBPyConnection, day: dt.date | None = None
) -> list[tuple[str, str, int]]:
    """(adapter, problem, requests) for the adapters of the day's requests (all days when None) that have no
    factor row, whose entry has no base_model, or whose base_model is not the request's model."""
    return [(str(a), str(p), int(n)) for a, p, n in con.execute(PROBLEMS_SQL, {"day": day}).fetchall()]
