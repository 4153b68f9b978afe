with source as (
    select * from {{ source('raw', 'clusters') }}
),

final as (
    select
        cluster,
        region,
        gpu_model,
        cast(gpus_per_node as integer) as gpus_per_node,
        cast(gpu_idle_w as double) as gpu_idle_w,
        cast(host_idle_w as double) as host_idle_w,
        cast(host_max_w as double) as host_max_w,
        cast(pue as double) as pue,
        cast(wue_onsite_l_per_kwh as double) as wue_onsite_l_per_kwh,
        cast(gpu_embodied_kg_co2e as double) as gpu_embodied_kg_co2e,
        cast(server_embodied_kg_co2e as double) as server_embodied_kg_co2e,
        cast(lifetime_years as double) as lifetime_years,
        cast(water_embodied_l as double) as water_embodied_l,
        coalesce(attribution_level, 'auto') as attribution_level,
        provider,
        cast(gpu_max_w as double) as gpu_max_w
    from source
)

select * from final
