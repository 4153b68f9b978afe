with source as (
    select * from {{ source('factors', 'water_intensity') }}
),

final as (
    select
        zone,
        cast(ewif_l_per_kwh as double) as ewif_l_per_kwh,
        cast(coalesce(low_l_per_kwh, ewif_l_per_kwh) as double) as ewif_low_l_per_kwh,
        cast(coalesce(high_l_per_kwh, ewif_l_per_kwh) as double) as ewif_high_l_per_kwh,
        {{ factor_provenance() }}
    from source
)

select * from final
