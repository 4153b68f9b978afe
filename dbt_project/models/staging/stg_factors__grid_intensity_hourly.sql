with source as (
    select * from {{ source('factors', 'grid_intensity_hourly') }}
),

final as (
    select
        zone,
        datetime_utc as hour_start,
        cast(location_g_co2e_per_kwh as double) as location_g_co2e_per_kwh,
        cast(market_g_co2e_per_kwh as double) as market_g_co2e_per_kwh,
        cast(lifecycle_g_co2e_per_kwh as double) as lifecycle_g_co2e_per_kwh,
        coalesce(estimated, false) as estimated,
        {{ factor_provenance() }}
    from source
)

select * from final
