-- Per cluster and day: the impact of the metered hardware, what was attributed to requests, and the
-- reconciliation in the spirit of Google's 2025 method (arXiv 2508.15734): shares of facility energy that are
-- accelerator dynamic, accelerator idle (allocated to requests), host (CPU/DRAM, allocated), idle machines (energy
-- of pool-windows no request ran in, spread as unallocated idle) and data-centre overhead (PUE - 1), and the
-- median request's accelerator-only vs comprehensive (facility) energy.
-- Conservation: attributed + unattributed = total for operational carbon, embodied carbon and embodied water, as
-- for energy in fct_cluster_energy_daily (unattributed = everything, on a day with telemetry but no requests).

with factors as (
    select * from {{ ref('int_cluster_day_factors') }}
    where day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_pool_window_impact') }}
    where day = {{ partition_day() }}
),

request_days as (
    select * from {{ ref('int_request_days') }}
    where day = {{ partition_day() }}
),

started as (
    select * from {{ ref('fct_request_impact') }}
    where day = {{ partition_day() }}
),

totals as (
    select
        cluster,
        sum(energy_j) as metered_it_energy_j,
        sum(case when component = 'gpu' then energy_j else 0 end) as gpu_energy_j,
        sum(energy_j * ci) / 3.6e6 as it_location_g_co2e,
        sum(case when annual_factor then energy_j else 0 end) as annual_factor_energy_j,
        sum(embodied_g) as embodied_g_co2e,
        sum(water_l) as water_embodied_l,
        sum(case when component = 'gpu' then covered_s else 0 end) as gpu_seconds,
        sum(case when component = 'host' then covered_s else 0 end) as node_seconds
    from pools
    group by cluster
),

attributed as (
    select
        cluster,
        count(*) as requests,
        sum(request_seconds) as request_seconds,
        sum(it_energy_j) as it_energy_j,
        sum(accelerator_dynamic_energy_j) as accelerator_dynamic_energy_j,
        sum(accelerator_energy_j - accelerator_dynamic_energy_j) as accelerator_idle_energy_j,
        sum(host_energy_j) as host_energy_j,
        sum(unallocated_idle_energy_j) as unallocated_idle_energy_j,
        sum(it_location_g_co2e) as it_location_g_co2e,
        sum(embodied_g_co2e) as embodied_g_co2e,
        sum(water_embodied_l) as water_embodied_l
    from request_days
    group by cluster
),

medians as (
    select
        cluster,
        {{ median('accelerator_energy_j') }} / 3600 as median_accelerator_energy_wh_per_request,
        {{ median('facility_energy_j') }} / 3600 as median_facility_energy_wh_per_request,
        {{ median('total_g_co2e') }} as median_total_g_co2e_per_request,
        {{ median('total_water_l') }} * 1000 as median_total_water_ml_per_request
    from started
    where energy_source = 'telemetry'
    group by cluster
),

final as (
    select
        f.cluster,
        {{ partition_day() }} as day,
        f.zone,
        f.pue,
        coalesce(t.metered_it_energy_j, 0) as metered_it_energy_j,
        f.pue * coalesce(t.metered_it_energy_j, 0) as facility_energy_j,
        f.pue * coalesce(t.it_location_g_co2e, 0) as operational_location_g_co2e,
        f.pue * coalesce(a.it_location_g_co2e, 0) as attributed_operational_location_g_co2e,
        coalesce(t.embodied_g_co2e, 0) as embodied_g_co2e,
        coalesce(a.embodied_g_co2e, 0) as attributed_embodied_g_co2e,
        coalesce(t.water_embodied_l, 0) as water_embodied_l,
        coalesce(a.water_embodied_l, 0) as attributed_water_embodied_l,
        case when coalesce(a.request_seconds, 0) > 0 then 0 else 1 end as unattributed_share,
        coalesce(t.gpu_seconds, 0) as gpu_seconds,
        coalesce(t.node_seconds, 0) as node_seconds,
        coalesce(a.requests, 0) as requests,
        1 - coalesce(t.annual_factor_energy_j / nullif(t.metered_it_energy_j, 0), 0) as grid_hourly_energy_share,
        -- reconciliation: shares of facility energy (they add up to 1 on a day with requests)
        a.accelerator_dynamic_energy_j / nullif(f.pue * t.metered_it_energy_j, 0) as accelerator_dynamic_share,
        a.accelerator_idle_energy_j / nullif(f.pue * t.metered_it_energy_j, 0) as accelerator_idle_share,
        a.host_energy_j / nullif(f.pue * t.metered_it_energy_j, 0) as host_share,
        a.unallocated_idle_energy_j / nullif(f.pue * t.metered_it_energy_j, 0) as idle_machines_share,
        (f.pue - 1) / f.pue as overhead_share,
        m.median_accelerator_energy_wh_per_request,
        m.median_facility_energy_wh_per_request,
        m.median_total_g_co2e_per_request,
        m.median_total_water_ml_per_request
    from factors as f
    left join totals as t on f.cluster = t.cluster
    left join attributed as a on f.cluster = a.cluster
    left join medians as m on f.cluster = m.cluster
    where t.cluster is not null or a.cluster is not null
)

select * from final
