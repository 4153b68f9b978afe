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
        cast(ceil(86400 / p.window_s) as bigint) as windows_per_day,
        cast(floor((i.t0_s - {{ partition_day_epoch_s() }}) / p.window_s) as bigint) as first_window,
        cast(ceil((i.t1_s - {{ partition_day_epoch_s() }}) / p.window_s) as bigint) - 1 as last_window
    from intervals as i
    inner join params as p on i.cluster = p.cluster
    -- Power is not integrated across gaps (energy_j is null there); a CPU reading after a gap describes its
    -- own collection period, not the gap, so it is not stretched over it either. Counter deltas across gaps are
    -- kept (and flagged by gap_covered_s).
    where i.energy_j is not null or (i.cpu_utilization_ratio is not null and not i.is_gap)
),

expanded as (
    -- most intervals lie inside one window (scrapes aligned with windows): no expansion needed for those
    select b.*, b.first_window as window_index
    from bounded as b
    where b.first_window = b.last_window
    union all
    select
        b.*,
        unnest(generate_series(
            greatest(b.first_window, 0), least(b.last_window, b.windows_per_day - 1)
        )) as window_index
    from bounded as b
    where b.first_window <> b.last_window
),

window_overlaps as (
    select
        e.*,
        e.day0_s + e.window_index * e.window_s as window_start_s,
        least(e.window_s, 86400 - e.window_index * e.window_s) as window_length_s,
        least(e.t1_s, e.day0_s + (e.window_index + 1) * e.window_s, e.day0_s + 86400)
        - greatest(e.t0_s, e.day0_s + e.window_index * e.window_s) as overlap_s
    from expanded as e
    where e.window_index between 0 and e.windows_per_day - 1
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
    where overlap_s > 0
    group by cluster, component, node, gpu, window_index
)

select * from final
