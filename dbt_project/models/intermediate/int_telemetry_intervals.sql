-- Consecutive sample pairs of every series: the interval (t0, t1] between two scrapes and what it says.
--   gpu_energy_counter_j: energy = counter delta; a negative delta is an exporter/counter reset, never negative
--       energy: the interval's energy then comes from the power samples around it, else from the counter's value
--       since the reset (what the counter accumulated after restarting from 0). A delta across a gap is kept
--       (the counter measured it), spread over the gap and flagged, unless the gap is an absence (see below).
--   gpu_power_w: energy = trapezoid of the two power readings; not integrated across a gap.
--   cpu_utilization_ratio: the reading at t1 is the mean over (t0, t1] (as DCGM/Triton/node_exporter report it).
--   cpu_seconds_counter_s (node_exporter): per-CPU mode counters turned into a busy ratio over the interval.

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
    select cluster, node, gpu, sample_epoch_s, value from all_samples
    where quantity = 'gpu_power_w'
),

samples as (
    -- utilisation is not needed for energy; power of GPUs with a counter only fills counter resets (below)
    select s.*
    from all_samples as s
    where s.quantity in ('gpu_energy_counter_j', 'cpu_utilization_ratio', 'cpu_seconds_counter_s')
    union all
    select s.*
    from all_samples as s
    anti join counter_gpus as c on s.cluster = c.cluster and s.node = c.node and s.gpu = c.gpu
    where s.quantity = 'gpu_power_w'
),

pairs as (
    select
        cluster,
        node,
        gpu,
        cpu,
        mode,
        quantity,
        lag(sample_epoch_s) over series as t0_s,
        sample_epoch_s as t1_s,
        lag(value) over series as v0,
        value as v1
    from samples
    window series as (partition by series_key order by sample_epoch_s)
),

intervals as (
    select
        p.*,
        p.t1_s - p.t0_s as dt_s,
        p.t1_s - p.t0_s > {{ var('max_gap_windows') }} * params.window_s as is_gap
    from pairs as p
    inner join params on p.cluster = params.cluster
    where p.t0_s is not null and p.t1_s > p.t0_s
),

power_intervals as (
    select
        cluster, node, gpu, t0_s, t1_s, dt_s, is_gap,
        (v0 + v1) / 2 * dt_s as energy_j
    from intervals
    where quantity = 'gpu_power_w'
),

counter_intervals as (
    select
        cluster, node, gpu, t0_s, t1_s, dt_s, is_gap,
        v1 < v0 as is_reset,
        case when v1 >= v0 then v1 - v0 end as delta_j,
        v1 as since_reset_j
    from intervals
    where quantity = 'gpu_energy_counter_j'
),

reset_power as (
    -- Power over a reset interval: the mean of the power readings inside it (inclusive) x its length.
    -- Reset intervals are rare, so this range join is cheap.
    select
        c.cluster, c.node, c.gpu, c.t0_s,
        avg(p.value) * c.dt_s as energy_j
    from counter_intervals as c
    inner join power_samples as p
        on
            c.cluster = p.cluster and c.node = p.node and c.gpu = p.gpu
            and p.sample_epoch_s between c.t0_s and c.t1_s
    where c.is_reset and not c.is_gap
    group by c.cluster, c.node, c.gpu, c.t0_s, c.dt_s
),

counter_energy as (
    select
        c.*,
        p.window_s,
        coalesce(c.delta_j, r.energy_j, c.since_reset_j) as energy_j,
        r.energy_j is not null as from_power,
        -- A gap ending in a reset, or whose delta is below half the GPU's idle power, is an absence: the node was
        -- scaled in or rebooted (a present GPU always draws its idle power). An outage of the exporter alone
        -- keeps the counter running at >= idle power: that delta is real and is spread over the gap, flagged.
        c.is_gap and (c.is_reset or coalesce(c.delta_j, 0) < 0.5 * coalesce(p.gpu_idle_w, 0) * c.dt_s) as is_absence
    from counter_intervals as c
    inner join params as p on c.cluster = p.cluster
    left join reset_power as r
        on c.cluster = r.cluster and c.node = r.node and c.gpu = r.gpu and c.t0_s = r.t0_s
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
        end as energy_source
    from counter_energy
    union all
    select
        p.cluster, p.node, p.gpu, p.t0_s, p.t1_s, p.dt_s, p.is_gap, false as is_reset,
        case when not p.is_gap then p.energy_j end as energy_j,
        'power' as energy_source
    from power_intervals as p
),

cpu_util as (
    select
        cluster, node, t0_s, t1_s, dt_s, is_gap,
        v1 as cpu_utilization_ratio
    from intervals
    where quantity = 'cpu_utilization_ratio'
),

cpu_seconds as (
    select
        cluster, node, t0_s, t1_s, dt_s, bool_or(is_gap) as is_gap,
        sum(case when mode not in ('idle', 'iowait') then v1 - v0 end)
        / nullif(sum(v1 - v0), 0) as cpu_utilization_ratio
    from intervals
    where quantity = 'cpu_seconds_counter_s'
    group by cluster, node, t0_s, t1_s, dt_s
    having bool_and(v1 >= v0)
),

final as (
    select
        {{ partition_day() }} as day,
        'gpu' as component,
        cluster, node, gpu, t0_s, t1_s, dt_s, is_gap, is_reset,
        energy_j,
        energy_source,
        cast(null as double) as cpu_utilization_ratio
    from gpu_energy
    union all
    select
        {{ partition_day() }} as day,
        'host' as component,
        cluster, node, null as gpu, t0_s, t1_s, dt_s, is_gap, false as is_reset,
        null as energy_j,
        'cpu utilisation' as energy_source,
        least(greatest(cpu_utilization_ratio, 0), 1) as cpu_utilization_ratio
    from cpu_util
    union all
    select
        {{ partition_day() }} as day,
        'host' as component,
        cluster, node, null as gpu, t0_s, t1_s, dt_s, is_gap, false as is_reset,
        null as energy_j,
        'node_cpu_seconds_total' as energy_source,
        least(greatest(cpu_utilization_ratio, 0), 1) as cpu_utilization_ratio
    from cpu_seconds
    where cpu_utilization_ratio is not null
)

select * from final
