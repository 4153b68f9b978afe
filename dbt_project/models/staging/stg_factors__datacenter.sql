with source as (
    select * from {{ source('factors', 'datacenter') }}
),

final as (
    select
        provider,
        cast(pue as double) as pue,
        cast(coalesce(pue_low, pue) as double) as pue_low,
        cast(coalesce(pue_high, pue) as double) as pue_high,
        cast(wue_onsite_l_per_kwh as double) as wue_onsite_l_per_kwh,
        cast(coalesce(wue_low_l_per_kwh, wue_onsite_l_per_kwh) as double) as wue_low_l_per_kwh,
        cast(coalesce(wue_high_l_per_kwh, wue_onsite_l_per_kwh) as double) as wue_high_l_per_kwh,
        {{ factor_provenance() }}
    from source
)

select * from final
