{{ config(pre_hook="{{ delete_partition('day') }}") }}

-- Intervals spread over the day's windows: each interval's energy (and CPU utilisation-seconds) is shared among
-- the windows it overlaps in proportion to the overlap, so a window gets exactly the energy measured inside it
-- when scrapes align with windows, and a time-proportional share otherwise. One row per series and window.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }}
),

bounded as (
    select
        i.*,
        p.window_s,
        {{ partition_day_epoch_s() }} as day0_s,
        cast(ceil(86400 / p.window_s) as bigint) as windows_per_day
    from intervals as i
    inner join params as p on i.cluster = p.cluster
    -- Power is not integrated across gaps (energy_j is null there); a CPU reading after a gap describes its
    -- own collection period, not the gap, so it is not stretched over it either. Counter deltas across gaps are
    -- kept (and flagged by gap_covered_s).
    where i.energy_j is not null or (i.cpu_utilization_ratio is not null and not i.is_gap)
),

expanded as (
    select
        b.*,
        unnest(generate_series(
            greatest(cast(floor((b.t0_s - b.day0_s) / b.window_s) as bigint), 0),
            least(cast(ceil((b.t1_s - b.day0_s) / b.window_s) as bigint) - 1, b.windows_per_day - 1)
        )) as window_index
    from bounded as b
),

window_overlaps as (
    select
        e.*,
        e.day0_s + e.window_index * e.window_s as window_start_s,
        least(e.window_s, 86400 - e.window_index * e.window_s) as window_length_s,
        least(e.t1_s, e.day0_s + (e.window_index + 1) * e.window_s, e.day0_s + 86400)
        - greatest(e.t0_s, e.day0_s + e.window_index * e.window_s) as overlap_s
    from expanded as e
),

final as (
    select
        {{ partition_day() }} as day,
        cluster,
        component,
        node,
        gpu,
        window_index,
        any_value(window_start_s) as window_start_s,
        any_value(window_length_s) as window_s,
        sum(energy_j * overlap_s / dt_s) as energy_j,
        sum(overlap_s) as covered_s,
        sum(cpu_utilization_ratio * overlap_s) as cpu_utilization_s,
        sum(case when is_gap then overlap_s else 0 end) as gap_covered_s,
        count(distinct case when is_reset then t0_s end) as counter_resets,
        string_agg(distinct energy_source, ', ' order by energy_source) as energy_source
    from window_overlaps
    where overlap_s > 0
    group by cluster, component, node, gpu, window_index
)

select * from final
