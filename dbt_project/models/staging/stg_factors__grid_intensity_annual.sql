with source as (
    select * from {{ source('factors', 'grid_intensity_annual') }}
),

final as (
    select
        zone,
        cast(year as integer) as year,
        cast(location_g_co2e_per_kwh as double) as location_g_co2e_per_kwh,
        cast(market_g_co2e_per_kwh as double) as market_g_co2e_per_kwh,
        cast(coalesce(low_g_co2e_per_kwh, location_g_co2e_per_kwh) as double) as low_g_co2e_per_kwh,
        cast(coalesce(high_g_co2e_per_kwh, location_g_co2e_per_kwh) as double) as high_g_co2e_per_kwh,
        cast(lifecycle_g_co2e_per_kwh as double) as lifecycle_g_co2e_per_kwh,
        -- direct (combustion), lifecycle or unspecified: country averages are often lifecycle figures
        coalesce(basis, 'unspecified') as basis,
        {{ factor_provenance() }}
    from source
)

select * from final
