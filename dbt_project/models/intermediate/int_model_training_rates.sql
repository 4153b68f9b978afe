{{ config(materialized='table') }}

-- Training and fine-tuning amortised per inference, one rate per factor model and calendar month (METHODOLOGY
-- section 5; SCI for AI keeps them apart from the consumer score). For month k of the model's service (k = 0 at
-- service_start, or at the first month it served requests here):
--   S_k  inferences served before month k (inferences = output tokens + 1 per request, every cluster)
--   a_k  share of the footprint amortised before month k
--   P_k  remaining projected inferences, re-projected from observed volume:
--        = V_(k-1) x (service_months - k)   when service_months is known and month k-1 served requests
--          (last month's run rate over the remaining service months)
--        = projected_lifetime_inferences - S_k   otherwise
--   phi_k = (1 - a_k) / P_k  (0 once P_k <= 0: service over or projection reached), a_(k+1) = a_k + phi_k x V_k
--   rate = footprint x phi_k, for training and fine-tuning carbon and training water alike.
-- A LoRA adapter (an entry with base_model) is a factor model of its own: its footprint is fine_tuning_kg_co2e, its
-- volume the inferences of the requests that name it (int_model_day_volumes, kind 'adapter').
-- The whole footprint is amortised once (sum of rate x volume over the months <= footprint) and a month's rate
-- only depends on earlier months, so it does not change while the month's days are materialised.

with factor_models as (
    {% call first_row_per('factor_model', 'factor_model') %}
    select * from {{ ref('stg_factors__models') }}
    {% endcall %}
),

aliases as (
    select alias_key, factor_model from {{ ref('stg_factors__models') }}
),

volumes as (
    select
        a.factor_model,
        cast(date_trunc('month', v.day) as date) as month,
        cast(sum(v.inferences) as bigint) as inferences
    from {{ ref('int_model_day_volumes') }} as v
    inner join aliases as a on {{ model_key('v.model') }} = a.alias_key
    group by a.factor_model, cast(date_trunc('month', v.day) as date)
),

spans as (
    select
        m.factor_model,
        least(
            cast(date_trunc('month', coalesce(m.service_start, min(v.month))) as date),
            coalesce(min(v.month), cast(date_trunc('month', m.service_start) as date))
        ) as first_month,
        greatest(
            coalesce(max(v.month), cast(date_trunc('month', {{ partition_day() }}) as date)),
            cast(date_trunc('month', {{ partition_day() }}) as date)
        ) as last_month
    from factor_models as m
    left join volumes as v on m.factor_model = v.factor_model
    group by m.factor_model, m.service_start
),

month_starts as (
    select
        factor_model,
        first_month,
        last_month,
        {{ explode_months('first_month', 'last_month') }} as month_start
    from spans
    where first_month is not null
),

months as (
    select
        s.factor_model,
        cast(s.month_start as date) as month,
        cast({{ months_between('s.first_month', 's.month_start') }} as integer) as k,
        coalesce(v.inferences, 0) as inferences,
        cast({{ months_between('s.first_month', 's.last_month') }} as integer) as last_k
    from month_starts as s
    left join volumes as v on s.factor_model = v.factor_model and cast(s.month_start as date) = v.month
),

chain as (
    {{ amortisation_chain('months', 'factor_models') }}
),

projected as (
    select
        m.factor_model,
        m.month,
        m.k,
        m.inferences,
        c.served_before,
        c.amortised_before,
        c.previous_inferences,
        f.service_months,
        f.training_kg_co2e,
        f.fine_tuning_kg_co2e,
        f.training_water_l,
        f.fine_tuning_water_l,
        f.source,
        f.version,
        f.base_model,
        {{ remaining_inferences('f', 'c.previous_inferences', 'm.k', 'c.served_before') }} as remaining
    from months as m
    inner join chain as c on m.factor_model = c.factor_model and m.k = c.k
    inner join factor_models as f on m.factor_model = f.factor_model
),

final as (
    select
        factor_model,
        month,
        k as service_month_index,
        inferences,
        served_before as inferences_before,
        amortised_before as share_amortised_before,
        remaining as projected_remaining_inferences,
        case
            when remaining is null then null
            when remaining > 0 then greatest(1 - amortised_before, 0) / remaining
            else 0
        end as share_per_inference,
        case
            when remaining is null then 'no projection: set projected_lifetime_inferences in factors/models.yml'
            when service_months is not null and k >= service_months then 'service period over'
            when remaining <= 0 then 'projection reached: footprint fully amortised'
            when service_months is not null and previous_inferences > 0 then 're-projected from observed volume'
            else 'projected lifetime inferences'
        end as rate_basis,
        training_kg_co2e,
        fine_tuning_kg_co2e,
        training_water_l,
        fine_tuning_water_l,
        source,
        version,
        base_model
    from projected
)

select
    *,
    coalesce(training_kg_co2e, 0) * 1000 * share_per_inference as training_g_co2e_per_inference,
    coalesce(fine_tuning_kg_co2e, 0) * 1000 * share_per_inference as fine_tuning_g_co2e_per_inference,
    coalesce(training_water_l, 0) * share_per_inference as training_water_l_per_inference,
    coalesce(fine_tuning_water_l, 0) * share_per_inference as fine_tuning_water_l_per_inference
from final
