-- Energy per attribution pool and window, split into idle and dynamic (METHODOLOGY section 2).
--   GPU energy: metered per GPU; idle = gpu_idle_w x seconds the GPU is present in the window.
--   Host energy per node: [P_idle + u_cpu x (P_max - P_idle)] x seconds the node is present (it is present while
--   any of its series reports, or an energy counter spans a gap without resetting, which proves the node stayed
--   up); idle = P_idle x the same seconds. No CPU reading (e.g. during an exporter outage): u_cpu = 0, flagged.
--   Pools: the GPU component is pooled per GPU, node or cluster, the host component per node or cluster, as
--   the day's attribution level says, so a request shares only the energy of the hardware that served it.
--   Idle is clipped to the metered energy (dynamic = max(E - idle, 0)) and the clipped amount is recorded, so
--   idle + dynamic = metered energy exactly.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

windows as (
    select * from {{ ref('int_telemetry_windows') }}
    where day = {{ partition_day() }}
),

pool_index as (
    select * from {{ ref('int_cluster_day_pools') }}
    where day = {{ partition_day() }}
),

gpu_windows as (
    select
        w.cluster,
        w.window_index,
        w.window_start_s,
        w.window_s,
        {{ gpu_pool('p.attribution_level', 'w.node', 'w.gpu') }} as pool,
        w.node,
        w.gpu,
        w.energy_j,
        p.gpu_idle_w * w.covered_s as idle_nominal_j,
        w.covered_s,
        w.gap_covered_s,
        w.counter_resets,
        false as cpu_missing
    from windows as w
    inner join params as p on w.cluster = p.cluster
    where w.component = 'gpu'
),

node_presence as (
    select
        cluster,
        node,
        window_index,
        any_value(window_start_s) as window_start_s,
        any_value(window_s) as window_s,
        max(covered_s) as present_s,
        sum(case when component = 'host' then cpu_utilization_s end)
        / nullif(sum(case when component = 'host' then covered_s end), 0) as cpu_utilization_ratio,
        max(gap_covered_s) as gap_covered_s
    from windows
    group by cluster, node, window_index
),

host_windows as (
    select
        n.cluster,
        n.window_index,
        n.window_start_s,
        n.window_s,
        {{ host_pool('p.attribution_level', 'n.node') }} as pool,
        n.node,
        null as gpu,
        n.present_s * (p.host_idle_w + coalesce(n.cpu_utilization_ratio, 0) * (p.host_max_w - p.host_idle_w))
            as energy_j,
        n.present_s * p.host_idle_w as idle_nominal_j,
        n.present_s as covered_s,
        n.gap_covered_s,
        0 as counter_resets,
        n.cpu_utilization_ratio is null as cpu_missing
    from node_presence as n
    inner join params as p on n.cluster = p.cluster
),

components as (
    select 'gpu' as component, * from gpu_windows
    union all
    select 'host' as component, * from host_windows
),

pool_windows as (
    select
        cluster,
        component,
        pool,
        window_index,
        any_value(window_start_s) as window_start_s,
        any_value(window_s) as window_s,
        sum(energy_j) as energy_j,
        least(sum(idle_nominal_j), sum(energy_j)) as idle_energy_j,
        sum(energy_j) - least(sum(idle_nominal_j), sum(energy_j)) as dynamic_energy_j,
        sum(idle_nominal_j) - least(sum(idle_nominal_j), sum(energy_j)) as idle_clipped_j,
        -- one gpu row per GPU and one host row per node in each window: counting rows counts hardware
        cast(sum(case when component = 'host' then 1 else 0 end) as bigint) as nodes,
        cast(sum(case when component = 'gpu' then 1 else 0 end) as bigint) as gpus,
        sum(covered_s) as covered_s,
        sum(gap_covered_s) as gap_covered_s,
        sum(counter_resets) as counter_resets,
        bool_or(cpu_missing) as cpu_missing
    from components
    group by cluster, component, pool, window_index
),

final as (
    select
        {{ partition_day() }} as day,
        {{ pool_window_key('i.pool_index', 'w.window_index') }} as pool_window_key,
        w.*
    from pool_windows as w
    inner join pool_index as i on w.cluster = i.cluster and w.component = i.component and w.pool = i.pool
)

select * from final
