{{ config(materialized='view') }}

-- Each attribution pool-window of the day (int_pool_window_energy) with what its impact needs: the grid intensity
-- of the hour the window starts in (int_cluster_hour_intensity: hourly, or the flagged annual fallback) and the
-- embodied carbon and water of the hardware present in it: GPU-seconds x the GPU rate for the GPU component,
-- node-seconds x the server rate for the host (int_cluster_day_factors). Requests share these like idle energy.

with pools as (
    select * from {{ ref('int_pool_window_energy') }}
    where day = {{ partition_day() }}
),

factors as (
    select * from {{ ref('int_cluster_day_factors') }}
    where day = {{ partition_day() }}
),

hour_intensity as (
    select * from {{ ref('int_cluster_hour_intensity') }}
    where day = {{ partition_day() }}
),

final as (
    -- each pool-window's energy with the grid intensity of the hour it starts in, and the embodied carbon and
    -- water of the hardware present in it (GPU-seconds for the GPU component, node-seconds for the host)
    select
        p.*,
        i.location_g_co2e_per_kwh as ci,
        i.location_low_g_co2e_per_kwh as ci_low,
        i.location_high_g_co2e_per_kwh as ci_high,
        i.market_g_co2e_per_kwh as ci_market,
        i.resolution = 'annual' as annual_factor,
        p.covered_s * case when p.component = 'gpu' then f.gpu_embodied_g_per_s else f.server_embodied_g_per_s end
            as embodied_g,
        p.covered_s
        * case when p.component = 'gpu' then f.gpu_embodied_low_g_per_s else f.server_embodied_low_g_per_s end
            as embodied_low_g,
        p.covered_s
        * case when p.component = 'gpu' then f.gpu_embodied_high_g_per_s else f.server_embodied_high_g_per_s end
            as embodied_high_g,
        p.covered_s * case when p.component = 'gpu' then f.gpu_water_l_per_s else f.node_water_l_per_s end
            as water_l,
        p.covered_s * case when p.component = 'gpu' then f.gpu_water_low_l_per_s else f.node_water_low_l_per_s end
            as water_low_l,
        p.covered_s * case when p.component = 'gpu' then f.gpu_water_high_l_per_s else f.node_water_high_l_per_s end
            as water_high_l
    from pools as p
    inner join factors as f on p.cluster = f.cluster
    left join hour_intensity as i
        on
            p.cluster = i.cluster
            and i.hour_of_day = cast(floor((p.window_start_s - {{ partition_day_epoch_s() }}) / 3600) as integer)
)

select * from final
