-- Consecutive sample pairs of every series: the interval (t0, t1] between two scrapes and what it says.
--   gpu_energy_counter_j: energy = counter delta; a negative delta is an exporter/counter reset, never negative
--       energy: the interval's energy then comes from the power samples around it, else from the counter's value
--       since the reset (what the counter accumulated after restarting from 0). A delta across a gap is kept
--       (the counter measured it), spread over the gap and flagged, unless the gap is an absence (see below).
--   gpu_power_w: energy = trapezoid of the two power readings; not integrated across a gap.
--   cpu_utilization_ratio: the reading at t1 is the mean over (t0, t1] (as DCGM/Triton/node_exporter report it).
--   cpu_seconds_counter_s (node_exporter): per-CPU mode counters turned into a busy ratio over the interval.
-- Faults real exporters have (docs/telemetry-faults.md), handled set-based in the one pass over the samples, the
-- rare cases on the rare rows only:
--   series are the logical series (raw series re-spelt, relabelled or scraped twice share one, identity.py);
--   duplicates: a sample less than duplicate_within_s after the one before it is the same scrape: the first is
--       kept, the pair spans from the previous kept sample (duplicate_samples counts the ones skipped);
--   power above the GPU's ceiling: the sample is rejected (a row with quarantine_reason, dt_s 0) and the
--       trapezoid spans its neighbours;
--   counter glitch: a drop and a return to where the counter was (or a jump and a return) within
--       counter_glitch_samples samples, sooner than a restarted counter could climb back at the ceiling: the
--       samples in between are rejected, one interval bridges them by the counter (bridge_reason);
--   stale counter: stale_counter_intervals intervals or more in which the counter did not move: the repeated
--       samples are rejected, the interval bridged to the counter's next move (then a gap: the usual gap and
--       absence rules apply) or, at a series' end, dropped;
--   an interval whose energy implies more than the ceiling is quarantined: energy_j null (not measured, counts
--       against coverage), the implausible figure in quarantined_energy_j.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

all_samples as (
    select * from {{ ref('stg_raw__telemetry_samples') }}
    where partition_day = {{ partition_day() }}
),

counter_gpus as (
    select distinct cluster, node, gpu from all_samples
    where quantity = 'gpu_energy_counter_j'
),

power_samples as (
    -- power readings the GPU can draw (they also bridge counter resets)
    select s.cluster, s.node, s.gpu, s.sample_epoch_s, s.value
    from all_samples as s
    inner join params as p on s.cluster = p.cluster
    where s.quantity = 'gpu_power_w' and s.value <= p.gpu_power_ceiling_w
),

implausible_power as (
    select
        s.cluster, s.node, s.gpu, s.sample_epoch_s, s.value,
        'power sample of ' || {{ rounded_text('s.value', 1) }} || {{ text_literal(" W above the GPU's ") }}
        || {{ rounded_text('p.gpu_power_ceiling_w', 1) }}
        || ' W ceiling (rejected)' as reason
    from all_samples as s
    inner join params as p on s.cluster = p.cluster
    where s.quantity = 'gpu_power_w' and s.value > p.gpu_power_ceiling_w
),

samples as (
    -- utilisation is not needed for energy; power of GPUs with a counter only fills counter resets (below)
    select s.logical_key, s.cluster, s.node, s.gpu, s.cpu, s.mode, s.quantity, s.sample_epoch_s, s.value
    from all_samples as s
    where s.quantity in ('gpu_energy_counter_j', 'cpu_utilization_ratio', 'cpu_seconds_counter_s')
    union all
    select s.logical_key, s.cluster, s.node, s.gpu, s.cpu, s.mode, s.quantity, s.sample_epoch_s, s.value
    from all_samples as s
    inner join params as p on s.cluster = p.cluster
    anti join counter_gpus as c on s.cluster = c.cluster and s.node = c.node and s.gpu = c.gpu
    where s.quantity = 'gpu_power_w' and s.value <= p.gpu_power_ceiling_w
),

sequenced as (
    -- the three samples before each one: enough to step over up to two duplicates of a scrape
    select
        s.*,
        lag(s.sample_epoch_s, 1) over series as t_1,
        lag(s.sample_epoch_s, 2) over series as t_2,
        lag(s.sample_epoch_s, 3) over series as t_3,
        lag(s.value, 1) over series as v_1,
        lag(s.value, 2) over series as v_2,
        lag(s.value, 3) over series as v_3
    from samples as s
    window series as (partition by s.logical_key order by s.sample_epoch_s)
),

pairs as (
    -- every kept sample (not a duplicate of the one before it) with the kept sample before it
    select
        q.logical_key,
        q.cluster,
        q.node,
        q.gpu,
        q.cpu,
        q.mode,
        q.quantity,
        case
            when q.t_2 is null or q.t_1 - q.t_2 >= p.duplicate_within_s then q.t_1
            when q.t_3 is null or q.t_2 - q.t_3 >= p.duplicate_within_s then q.t_2
            else q.t_3
        end as t0_s,
        q.sample_epoch_s as t1_s,
        case
            when q.t_2 is null or q.t_1 - q.t_2 >= p.duplicate_within_s then q.v_1
            when q.t_3 is null or q.t_2 - q.t_3 >= p.duplicate_within_s then q.v_2
            else q.v_3
        end as v0,
        q.value as v1,
        case
            when q.t_2 is null or q.t_1 - q.t_2 >= p.duplicate_within_s then 0
            when q.t_3 is null or q.t_2 - q.t_3 >= p.duplicate_within_s then 1
            else 2
        end as duplicate_samples,
        p.window_s,
        p.gpu_idle_w,
        p.gpu_power_ceiling_w
    from sequenced as q
    inner join params as p on q.cluster = p.cluster
    where q.t_1 is not null and q.sample_epoch_s - q.t_1 >= p.duplicate_within_s
),

intervals as (
    select
        *,
        t1_s - t0_s as dt_s,
        t1_s - t0_s > {{ var('max_gap_windows') }} * window_s as is_gap
    from pairs
    where t1_s > t0_s
),

power_intervals as (
    select
        cluster, node, gpu, t0_s, t1_s, dt_s, is_gap, duplicate_samples,
        (v0 + v1) / 2 * dt_s as energy_j
    from intervals
    where quantity = 'gpu_power_w'
),

counter_pairs as {{ not_materialized() }} (
    select * from intervals
    where quantity = 'gpu_energy_counter_j'
),

-- Counter glitches and stale counters: everything below until counter_intervals reads rare rows only.
counter_events as (
    -- a drop, or a jump no GPU could draw
    select *, v1 < v0 as is_drop
    from counter_pairs
    where v1 < v0 or v1 - v0 > gpu_power_ceiling_w * dt_s
),

glitch_spans as (
    -- from the last good reading (a) to the first reading back on track (d): a drop then a pair that returns to
    -- at least the reading before it, or a jump then a drop that returns there; sooner than a counter restarted
    -- after a could have climbed back at the ceiling
    {% call first_row_per('e.logical_key, e.t0_s', 'r.t1_s') -%}
    select
        e.logical_key, e.cluster, e.node, e.gpu, e.window_s, e.gpu_idle_w, e.gpu_power_ceiling_w,
        e.t0_s as a_s, e.v0 as a_v, r.t1_s as d_s, r.v1 as d_v,
        'counter glitch' as reason
    from counter_events as e
    inner join counter_pairs as r
        on
            e.logical_key = r.logical_key and e.t1_s <= r.t0_s
            and e.t0_s + ({{ var('counter_glitch_samples') }} + 1.5) * e.window_s >= r.t1_s
    where
        r.v1 >= e.v0 and e.v0 > e.gpu_power_ceiling_w * (r.t1_s - e.t0_s)
        and (e.is_drop or r.v1 < r.v0)
    {%- endcall %}
),

zero_pairs as (
    select
        *,
        sum(case when t0_s = previous_t1_s then 0 else 1 end) over (
            partition by logical_key order by t0_s
        ) as run
    from (
        select *, lag(t1_s) over (partition by logical_key order by t0_s) as previous_t1_s
        from counter_pairs
        where v1 = v0
    ) as z
),

stale_runs as (
    select
        logical_key, any_value(cluster) as cluster, any_value(node) as node, any_value(gpu) as gpu,
        any_value(window_s) as window_s, any_value(gpu_idle_w) as gpu_idle_w,
        any_value(gpu_power_ceiling_w) as gpu_power_ceiling_w,
        min(t0_s) as a_s, any_value(v0) as a_v, max(t1_s) as run_end_s
    from zero_pairs
    group by logical_key, run
    having count(*) >= {{ var('stale_counter_intervals') }}
),

stale_spans as (
    -- to the counter's next move, if the series goes on
    select
        s.logical_key, s.cluster, s.node, s.gpu, s.window_s, s.gpu_idle_w, s.gpu_power_ceiling_w,
        s.a_s, s.a_v, n.t1_s as d_s, n.v1 as d_v,
        'stale counter' as reason
    from stale_runs as s
    left join counter_pairs as n on s.logical_key = n.logical_key and s.run_end_s = n.t0_s
),

spans as {{ materialized() }} (
    -- (a span inside an earlier one of the same series is dropped)
    {%- set outside_earlier_spans -%}
    coalesce(
        max(coalesce(d_s, cast('infinity' as double))) over (
            partition by logical_key order by a_s rows between unbounded preceding and 1 preceding
        ) <= a_s,
        true
    )
    {%- endset %}
    {% call qualify_rows(outside_earlier_spans) -%}
    select * from (
        -- (the columns named: on Spark, first_row_per adds its row number to glitch_spans)
        select
            logical_key, cluster, node, gpu, window_s, gpu_idle_w, gpu_power_ceiling_w, a_s, a_v, d_s, d_v, reason
        from glitch_spans
        union all
        select * from stale_spans
    ) as u
    {%- endcall %}
),

in_spans as (
    -- (rare) the counter pairs inside a span: replaced by one bridge; their inner readings are rejected
    select c.logical_key, c.cluster, c.node, c.gpu, c.t1_s, c.v1, s.a_s, s.d_s, s.reason
    from spans as s
    inner join counter_pairs as c
        on s.logical_key = c.logical_key and s.a_s <= c.t0_s and (s.d_s is null or s.d_s >= c.t1_s)
),

span_pairs as (
    select logical_key, a_s, count(*) as pairs
    from in_spans
    group by logical_key, a_s
),

bridged_counter_pairs as {{ not_materialized() }} (
    select
        c.logical_key, c.cluster, c.node, c.gpu, c.t0_s, c.t1_s, c.v0, c.v1, c.dt_s, c.is_gap, c.duplicate_samples,
        c.window_s, c.gpu_idle_w, c.gpu_power_ceiling_w, cast(null as {{ type_string() }}) as bridge_reason
    from counter_pairs as c
    anti join spans as s
        on c.logical_key = s.logical_key and c.t0_s >= s.a_s and (s.d_s is null or c.t1_s <= s.d_s)
    union all
    select
        s.logical_key, s.cluster, s.node, s.gpu, s.a_s as t0_s, s.d_s as t1_s, s.a_v as v0, s.d_v as v1,
        s.d_s - s.a_s as dt_s, s.d_s - s.a_s > {{ var('max_gap_windows') }} * s.window_s as is_gap,
        0 as duplicate_samples, s.window_s, s.gpu_idle_w, s.gpu_power_ceiling_w,
        s.reason || ': ' || (n.pairs - 1) || ' sample(s) rejected, the interval bridged by the counter'
            as bridge_reason
    from spans as s
    inner join span_pairs as n on s.logical_key = n.logical_key and s.a_s = n.a_s
    where s.d_s is not null
),

rejected_counter_samples as (
    -- the readings inside a span
    select
        cluster, node, gpu, t1_s as sample_epoch_s,
        reason || ' sample of ' || {{ rounded_text('v1', 1) }} || ' J rejected' as reason
    from in_spans
    where d_s is null or t1_s < d_s
),

counter_intervals as {{ not_materialized() }} (
    select
        c.*,
        c.v1 < c.v0 as is_reset,
        case when c.v1 >= c.v0 then c.v1 - c.v0 end as delta_j,
        c.v1 as since_reset_j
    from bridged_counter_pairs as c
),

resets as (
    -- (rare) the counter resets
    select * from counter_intervals
    where is_reset
),

reset_power as (
    -- Power over a reset interval: the mean of the power readings inside it (inclusive) x its length.
    -- Reset intervals are rare, so this range join is cheap.
    select
        c.logical_key, c.t0_s,
        avg(p.value) * c.dt_s as energy_j
    from resets as c
    inner join power_samples as p
        on
            c.cluster = p.cluster and c.node = p.node and c.gpu = p.gpu
            and p.sample_epoch_s between c.t0_s and c.t1_s
    where not c.is_gap
    group by c.logical_key, c.t0_s, c.dt_s
),

counter_energy as (
    -- A gap ending in a reset, or whose delta is below half the GPU's idle power, is an absence: the node was
    -- scaled in or rebooted (a present GPU always draws its idle power). An outage of the exporter alone keeps
    -- the counter running at >= idle power: that delta is real and is spread over the gap, flagged.
    select
        c.*,
        c.delta_j as energy_j,
        false as from_power,
        c.is_gap and c.delta_j < 0.5 * coalesce(c.gpu_idle_w, 0) * c.dt_s as is_absence
    from counter_intervals as c
    where not c.is_reset
    union all
    select
        c.*,
        coalesce(r.energy_j, c.since_reset_j) as energy_j,
        r.energy_j is not null as from_power,
        c.is_gap as is_absence
    from resets as c
    left join reset_power as r on c.logical_key = r.logical_key and c.t0_s = r.t0_s
),

gpu_energy as (
    -- An absence is neither covered nor missing telemetry: what the counter accumulated since the node came back
    -- is placed in the interval's last window.
    select
        cluster, node, gpu,
        case when is_absence then greatest(t0_s, t1_s - window_s) else t0_s end as t0_s,
        t1_s,
        case when is_absence then least(dt_s, window_s) else dt_s end as dt_s,
        is_gap and not is_absence as is_gap,
        is_reset,
        energy_j,
        case
            when is_absence then 'energy counter (after an absence)'
            when not is_reset then 'energy counter'
            when from_power then 'power (counter reset)'
            else 'counter value since reset'
        end as energy_source,
        duplicate_samples,
        bridge_reason,
        gpu_power_ceiling_w
    from counter_energy
    union all
    select
        p.cluster, p.node, p.gpu, p.t0_s, p.t1_s, p.dt_s, p.is_gap, false as is_reset,
        case when not p.is_gap then p.energy_j end as energy_j,
        'power' as energy_source,
        p.duplicate_samples,
        cast(null as {{ type_string() }}) as bridge_reason,
        cast(null as double) as gpu_power_ceiling_w
    from power_intervals as p
),

checked_gpu_energy as (
    -- energy no GPU could draw in the time is quarantined: not measured, it counts against coverage
    select
        *,
        coalesce(energy_j > gpu_power_ceiling_w * dt_s, false) as is_implausible
    from gpu_energy
),

cpu_util as (
    select
        cluster, node, t0_s, t1_s, dt_s, is_gap, duplicate_samples,
        v1 as cpu_utilization_ratio
    from intervals
    where quantity = 'cpu_utilization_ratio'
),

cpu_seconds as (
    select
        cluster, node, t0_s, t1_s, dt_s, bool_or(is_gap) as is_gap, max(duplicate_samples) as duplicate_samples,
        sum(case when mode not in ('idle', 'iowait') then v1 - v0 end)
        / nullif(sum(v1 - v0), 0) as cpu_utilization_ratio
    from intervals
    where quantity = 'cpu_seconds_counter_s'
    group by cluster, node, t0_s, t1_s, dt_s
    having bool_and(v1 >= v0)
),

rejected_samples as (
    select cluster, node, gpu, sample_epoch_s, reason from rejected_counter_samples
    union all
    select cluster, node, gpu, sample_epoch_s, reason from implausible_power
),

final as (
    select
        {{ partition_day() }} as day,
        'gpu' as component,
        cluster, node, gpu, t0_s, t1_s, dt_s, is_gap, is_reset,
        case when not is_implausible then energy_j end as energy_j,
        energy_source,
        cast(null as double) as cpu_utilization_ratio,
        cast(duplicate_samples as bigint) as duplicate_samples,
        bridge_reason,
        case
            when is_implausible
                then
                    'implausible: ' || {{ rounded_text('energy_j / dt_s', 1) }} || ' W over '
                    || {{ rounded_text('dt_s', 3) }} || {{ text_literal(" s is above the GPU's ") }}
                    || {{ rounded_text('gpu_power_ceiling_w', 1) }} || ' W ceiling (quarantined)'
        end as quarantine_reason,
        case when is_implausible then energy_j end as quarantined_energy_j
    from checked_gpu_energy
    union all
    select
        {{ partition_day() }} as day,
        'host' as component,
        cluster, node, null as gpu, t0_s, t1_s, dt_s, is_gap, false as is_reset,
        null as energy_j,
        'cpu utilisation' as energy_source,
        least(greatest(cpu_utilization_ratio, 0), 1) as cpu_utilization_ratio,
        cast(duplicate_samples as bigint) as duplicate_samples,
        null as bridge_reason,
        null as quarantine_reason,
        null as quarantined_energy_j
    from cpu_util
    union all
    select
        {{ partition_day() }} as day,
        'host' as component,
        cluster, node, null as gpu, t0_s, t1_s, dt_s, is_gap, false as is_reset,
        null as energy_j,
        'node_cpu_seconds_total' as energy_source,
        least(greatest(cpu_utilization_ratio, 0), 1) as cpu_utilization_ratio,
        cast(duplicate_samples as bigint) as duplicate_samples,
        null as bridge_reason,
        null as quarantine_reason,
        null as quarantined_energy_j
    from cpu_seconds
    where cpu_utilization_ratio is not null
    union all
    -- rejected samples: one row each (dt_s 0, no energy), so the day's quarantine is listed where its intervals are
    select
        {{ partition_day() }} as day,
        'gpu' as component,
        cluster, node, gpu, sample_epoch_s as t0_s, sample_epoch_s as t1_s, 0 as dt_s, false as is_gap,
        false as is_reset,
        null as energy_j,
        'rejected sample' as energy_source,
        null as cpu_utilization_ratio,
        0 as duplicate_samples,
        null as bridge_reason,
        reason as quarantine_reason,
        null as quarantined_energy_j
    from rejected_samples
)

select * from final
