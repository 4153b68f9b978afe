-- Per cluster and day: metered IT energy, what was attributed to requests and what could not be (a day with
-- telemetry but no request-seconds). Conservation: attributed + unattributed = metered (checked by dbt and
-- Dagster). telemetry_coverage = the lower of (GPU-seconds covered by telemetry, not counting seconds bridged
-- across a gap, / GPU-seconds from each GPU's first to last sample of the day) and (request-seconds in a window
-- where the request's own pool had telemetry / all request-seconds).
-- Telemetry faults (docs/telemetry-faults.md): quarantined GPU-seconds and energy (above the GPU's power ceiling:
-- not counted, they lower coverage), samples rejected (glitches, stale counters, power above the ceiling) and
-- skipped as duplicate scrapes, intervals bridged, and the share of request-seconds that fell on GPUs drawing no
-- dynamic power (durations too long: duration_s in ms?).

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

all_intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }}
),

loads as (
    select * from {{ ref('int_pool_window_load') }}
    where day = {{ partition_day() }} and component = 'gpu' and pool_window_key is not null
),

pool_energy as (
    select * from {{ ref('int_pool_window_energy') }}
    where day = {{ partition_day() }} and component = 'gpu'
),

idle_gpu_load as (
    -- request-seconds on GPU pools that drew (almost) no dynamic power in the window: requests cannot have run
    -- there. Estimated on every 16th window of the day (a warning threshold, not an energy: the sample keeps the
    -- join small)
    select
        e.cluster,
        sum(case when e.dynamic_energy_j <= 0.01 * e.idle_energy_j then l.request_seconds else 0 end)
        / nullif(sum(l.request_seconds), 0) as idle_gpu_request_seconds_share
    from loads as l
    inner join pool_energy as e on l.pool_window_key = e.pool_window_key
    where l.window_index % 16 = 0 and e.window_index % 16 = 0
    group by e.cluster
),

telemetry_faults as (
    -- one pass over the day's intervals: the GPU-seconds telemetry should cover (every GPU interval between two
    -- samples, clipped to the day; absences, i.e. gaps ending in a counter reset, were already shortened to their
    -- last window upstream), and what the faults took out
    select
        cluster,
        sum(case when component = 'gpu' then greatest(
            least(t1_s, {{ partition_day_epoch_s() }} + 86400) - greatest(t0_s, {{ partition_day_epoch_s() }}), 0
        ) end) as expected_gpu_s,
        sum(case when quarantined_energy_j is not null then greatest(
            least(t1_s, {{ partition_day_epoch_s() }} + 86400) - greatest(t0_s, {{ partition_day_epoch_s() }}), 0
        ) end) as quarantined_gpu_s,
        sum(quarantined_energy_j * greatest(
            least(t1_s, {{ partition_day_epoch_s() }} + 86400) - greatest(t0_s, {{ partition_day_epoch_s() }}), 0
        ) / dt_s) as quarantined_energy_j,
        count(
            case
                when
                    energy_source = 'rejected sample' and t0_s >= {{ partition_day_epoch_s() }}
                    and t0_s < {{ partition_day_epoch_s() }} + 86400
                    then 1
            end
        ) as rejected_samples,
        count(case when bridge_reason is not null and t1_s > {{ partition_day_epoch_s() }} then 1 end)
            as bridged_intervals,
        sum(
            case
                when t1_s > {{ partition_day_epoch_s() }} and t1_s <= {{ partition_day_epoch_s() }} + 86400
                    then duplicate_samples
                else 0
            end
        ) as duplicate_samples
    from all_intervals
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
        sum(unallocated_idle_energy_j) as unallocated_idle_energy_j,
        -- request-seconds in a pool-window of the request's own GPU/node pool (or its fallback) with telemetry
        sum(telemetry_covered_s) as covered_request_s,
        sum(request_seconds) as request_seconds
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
            coalesce(w.covered_gpu_s / nullif(f.expected_gpu_s, 0), 0),
            coalesce(r.covered_request_s / nullif(r.request_seconds, 0), 1)
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
        p.attribution_level,
        p.gpu_max_w,
        p.gpu_max_source,
        p.gpu_power_ceiling_w,
        coalesce(f.quarantined_gpu_s, 0) as quarantined_gpu_s,
        coalesce(f.quarantined_energy_j, 0) as quarantined_energy_j,
        coalesce(f.rejected_samples, 0) as rejected_samples,
        coalesce(f.bridged_intervals, 0) as bridged_intervals,
        cast(coalesce(f.duplicate_samples, 0) as bigint) as duplicate_samples,
        g.idle_gpu_request_seconds_share
    from window_totals as w
    full outer join request_totals as r on w.cluster = r.cluster
    inner join params as p on coalesce(w.cluster, r.cluster) = p.cluster
    left join telemetry_faults as f on coalesce(w.cluster, r.cluster) = f.cluster
    left join idle_gpu_load as g on coalesce(w.cluster, r.cluster) = g.cluster
)

select * from final
