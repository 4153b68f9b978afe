-- One row per factor model and each name requests may call it by (alias_key: normalised name, see the macro
-- model_key), so requests join on model_key(model) = alias_key.

with models as (
    select * from {{ source('factors', 'models') }}
),

aliases as (
    select * from {{ source('factors', 'model_aliases') }}
),

final as (
    select
        a.alias_key,
        m.model as factor_model,
        cast(m.total_parameters_b as double) as total_parameters_b,
        cast(m.active_parameters_b as double) as active_parameters_b,
        cast(m.training_kg_co2e as double) as training_kg_co2e,
        cast(m.training_water_l as double) as training_water_l,
        cast(m.fine_tuning_kg_co2e as double) as fine_tuning_kg_co2e,
        cast(m.fine_tuning_water_l as double) as fine_tuning_water_l,
        cast(m.projected_lifetime_inferences as double) as projected_lifetime_inferences,
        cast(m.service_start as date) as service_start,
        cast(m.service_months as integer) as service_months,
        -- a LoRA adapter's base model (null for a model)
        m.base_model,
        m.origin,
        m.source,
        m.licence,
        m.version
    from aliases as a
    inner join models as m on a.model = m.model
)

select * from final
