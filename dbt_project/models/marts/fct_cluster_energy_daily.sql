-- Per cluster and day: metered IT energy, what was attributed to requests and what could not be (a day with
-- telemetry but no request-seconds). Conservation: attributed + unattributed = metered (checked by dbt and
-- Dagster). telemetry_coverage = the lower of (GPU-seconds covered by telemetry, not counting seconds bridged
-- across a gap, / GPU-seconds from each GPU's first to last sample of the day) and (request-seconds in windows
-- with telemetry / all request-seconds).

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

windows as (
    select * from {{ ref('fct_window_energy') }}
    where day = {{ partition_day() }}
),

request_days as (
    select * from {{ ref('int_request_days') }}
    where day = {{ partition_day() }}
),

gpu_intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }} and component = 'gpu'
),

gpu_spans as (
    -- GPU-seconds telemetry should cover: every interval between two samples, clipped to the day (absences,
    -- i.e. gaps ending in a counter reset, were already shortened to their last window upstream).
    select
        cluster,
        sum(greatest(
            least(t1_s, {{ partition_day_epoch_s() }} + 86400) - greatest(t0_s, {{ partition_day_epoch_s() }}), 0
        )) as expected_gpu_s
    from gpu_intervals
    group by cluster
),

window_totals as (
    select
        cluster,
        sum(it_energy_j) as metered_it_energy_j,
        sum(idle_energy_j) as idle_energy_j,
        sum(dynamic_energy_j) as dynamic_energy_j,
        sum(gpu_energy_j) as gpu_energy_j,
        sum(host_energy_j) as host_energy_j,
        sum(idle_clipped_j) as idle_clipped_j,
        sum(gpu_covered_s - gpu_gap_filled_s) as covered_gpu_s,
        sum(request_seconds) as request_seconds,
        sum(case when not no_telemetry and it_energy_j > 0 then request_seconds else 0 end) as covered_request_s,
        sum(unallocated_energy_j) as unallocated_energy_j,
        sum(counter_resets) as counter_resets,
        count(case when has_gap then 1 end) as gap_windows,
        max(nodes) as max_nodes,
        max(gpus) as max_gpus
    from windows
    group by cluster
),

request_totals as (
    select
        cluster,
        count(*) as requests,
        sum(it_energy_j) as attributed_energy_j,
        sum(unallocated_idle_energy_j) as unallocated_idle_energy_j
    from request_days
    group by cluster
),

final as (
    select
        coalesce(w.cluster, r.cluster) as cluster,
        {{ partition_day() }} as day,
        coalesce(w.metered_it_energy_j, 0) as metered_it_energy_j,
        coalesce(r.attributed_energy_j, 0) as attributed_energy_j,
        case when coalesce(w.request_seconds, 0) > 0 then 0 else coalesce(w.metered_it_energy_j, 0) end
            as unattributed_energy_j,
        coalesce(r.requests, 0) as requests,
        least(
            coalesce(w.covered_gpu_s / nullif(s.expected_gpu_s, 0), 0),
            coalesce(w.covered_request_s / nullif(w.request_seconds, 0), 1)
        ) as telemetry_coverage,
        coalesce(w.gpu_energy_j, 0) as gpu_energy_j,
        coalesce(w.host_energy_j, 0) as host_energy_j,
        coalesce(w.idle_energy_j, 0) as idle_energy_j,
        coalesce(w.dynamic_energy_j, 0) as dynamic_energy_j,
        coalesce(r.unallocated_idle_energy_j, 0) as unallocated_idle_energy_j,
        coalesce(w.idle_clipped_j, 0) as idle_clipped_j,
        coalesce(w.request_seconds, 0) as request_seconds,
        cast(coalesce(w.counter_resets, 0) as bigint) as counter_resets,
        coalesce(w.gap_windows, 0) as gap_windows,
        coalesce(w.max_nodes, 0) as max_nodes,
        coalesce(w.max_gpus, 0) as max_gpus,
        p.window_s,
        p.gpu_idle_w,
        p.gpu_idle_source,
        p.attribution_level
    from window_totals as w
    full outer join request_totals as r on w.cluster = r.cluster
    left join gpu_spans as s on coalesce(w.cluster, r.cluster) = s.cluster
    inner join params as p on coalesce(w.cluster, r.cluster) = p.cluster
)

select * from final
