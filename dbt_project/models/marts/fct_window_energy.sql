-- Cluster energy per window (METHODOLOGY sections 2-3): nodes and GPUs present, IT energy split into idle and
-- dynamic, request-seconds, mean concurrency and energy per request-second.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_pool_window_energy') }}
    where day = {{ partition_day() }}
),

loads as (
    select * from {{ ref('int_pool_window_load') }}
    where day = {{ partition_day() }}
),

unallocated_by_window as (
    -- energy of the pool-windows no request touched (spread over the day's requests downstream)
    select p.cluster, p.window_index, sum(p.energy_j) as unallocated_energy_j
    from pools as p
    anti join loads as l on p.pool_window_key = l.pool_window_key
    group by p.cluster, p.window_index
),

energy as (
    select
        cluster,
        window_index,
        any_value(window_start_s) as window_start_s,
        any_value(window_s) as window_s,
        sum(case when component = 'host' then nodes else 0 end) as nodes,
        sum(case when component = 'gpu' then gpus else 0 end) as gpus,
        sum(energy_j) as it_energy_j,
        sum(case when component = 'gpu' then energy_j else 0 end) as gpu_energy_j,
        sum(case when component = 'host' then energy_j else 0 end) as host_energy_j,
        sum(idle_energy_j) as idle_energy_j,
        sum(dynamic_energy_j) as dynamic_energy_j,
        sum(idle_clipped_j) as idle_clipped_j,
        sum(case when component = 'gpu' then covered_s else 0 end) as gpu_covered_s,
        sum(case when component = 'gpu' then gap_covered_s else 0 end) as gpu_gap_filled_s,
        sum(gap_covered_s) > 0 as has_gap,
        sum(counter_resets) as counter_resets,
        bool_or(cpu_missing) as cpu_utilization_missing
    from pools
    group by cluster, window_index
),

load as (
    -- each request has one overlap per window, in one GPU pool: the GPU pools' loads count requests once
    select
        cluster,
        window_index,
        sum(request_seconds) as request_seconds,
        cast(sum(requests) as bigint) as requests
    from loads
    where component = 'gpu'
    group by cluster, window_index
),

final as (
    select
        coalesce(e.cluster, l.cluster) as cluster,
        {{ partition_day() }} as day,
        {{ timestamp_from_epoch_s(
            partition_day_epoch_s() ~ ' + coalesce(e.window_index, l.window_index) * p.window_s'
        ) }} as window_start,
        coalesce(e.window_s, least(p.window_s, 86400 - l.window_index * p.window_s)) as window_s,
        cast(coalesce(e.nodes, 0) as bigint) as nodes,
        cast(coalesce(e.gpus, 0) as bigint) as gpus,
        coalesce(e.it_energy_j, 0) as it_energy_j,
        coalesce(e.idle_energy_j, 0) as idle_energy_j,
        coalesce(e.dynamic_energy_j, 0) as dynamic_energy_j,
        coalesce(l.request_seconds, 0) as request_seconds,
        coalesce(l.request_seconds, 0)
        / coalesce(e.window_s, least(p.window_s, 86400 - l.window_index * p.window_s)) as mean_concurrency,
        e.it_energy_j / nullif(l.request_seconds, 0) as energy_per_request_second_j,
        e.idle_energy_j / nullif(l.request_seconds, 0) as idle_energy_per_request_second_j,
        e.dynamic_energy_j / nullif(l.request_seconds, 0) as dynamic_energy_per_request_second_j,
        coalesce(l.requests, 0) as requests,
        coalesce(e.gpu_energy_j, 0) as gpu_energy_j,
        coalesce(e.host_energy_j, 0) as host_energy_j,
        coalesce(u.unallocated_energy_j, 0) as unallocated_energy_j,
        coalesce(e.idle_clipped_j, 0) as idle_clipped_j,
        coalesce(e.gpu_covered_s, 0) as gpu_covered_s,
        coalesce(e.gpu_gap_filled_s, 0) as gpu_gap_filled_s,
        coalesce(e.has_gap, false) as has_gap,
        cast(coalesce(e.counter_resets, 0) as bigint) as counter_resets,
        coalesce(e.cpu_utilization_missing, false) as cpu_utilization_missing,
        e.cluster is null as no_telemetry,
        p.gpu_idle_w,
        p.gpu_idle_source,
        p.attribution_level
    from energy as e
    full outer join load as l on e.cluster = l.cluster and e.window_index = l.window_index
    inner join params as p on coalesce(e.cluster, l.cluster) = p.cluster
    left join unallocated_by_window as u on e.cluster = u.cluster and e.window_index = u.window_index
)

select * from final
