{{ config(materialized='view') }}

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
    select i.*, p.window_s
    from intervals as i
    inner join params as p on i.cluster = p.cluster
    -- Power is not integrated across gaps (energy_j is null there); a CPU reading after a gap describes its
    -- own collection period, not the gap, so it is not stretched over it either. Counter deltas across gaps are
    -- kept (and flagged by gap_covered_s).
    where i.energy_j is not null or (i.cpu_utilization_ratio is not null and not i.is_gap)
),

window_overlaps as (
    {{ split_by_window('bounded') }}
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
        -- an interval appears at most once per window, so this counts resets, not rows
        cast(sum(case when is_reset then 1 else 0 end) as bigint) as counter_resets
    from window_overlaps
    group by cluster, component, node, gpu, window_index
)

select * from final
