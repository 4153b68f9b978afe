with source as (
    select * from {{ source('factors', 'hardware') }}
),

final as (
    select
        component,
        hardware,
        cast(embodied_kg_co2e as double) as embodied_kg_co2e,
        cast(coalesce(embodied_low_kg_co2e, embodied_kg_co2e) as double) as embodied_low_kg_co2e,
        cast(coalesce(embodied_high_kg_co2e, embodied_kg_co2e) as double) as embodied_high_kg_co2e,
        cast(embodied_water_l as double) as embodied_water_l,
        cast(coalesce(embodied_water_low_l, embodied_water_l) as double) as embodied_water_low_l,
        cast(coalesce(embodied_water_high_l, embodied_water_l) as double) as embodied_water_high_l,
        cast(lifetime_years as double) as lifetime_years,
        cast(coalesce(lifetime_low_years, lifetime_years) as double) as lifetime_low_years,
        cast(coalesce(lifetime_high_years, lifetime_years) as double) as lifetime_high_years,
        {{ factor_provenance() }}
    from source
)

select * from final
