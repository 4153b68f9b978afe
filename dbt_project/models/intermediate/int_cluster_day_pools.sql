-- The day's attribution pools: per component (gpu, host) a GPU, a node or the whole cluster, as the cluster's
-- attribution level says, for every pool that has telemetry. pool_index numbers them densely over the day, so a
-- pool-window is one integer key, pool_index x 86400 + window_index (macro pool_window_key), that telemetry and
-- requests join on without comparing strings.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }}
),

hardware as (
    select distinct cluster, component, node, gpu from intervals
),

pools as (
    -- a GPU series makes a GPU pool; a node is present (and has a host pool) while any of its series reports
    select distinct h.cluster, 'gpu' as component, {{ gpu_pool('p.attribution_level', 'h.node', 'h.gpu') }} as pool
    from hardware as h
    inner join params as p on h.cluster = p.cluster
    where h.component = 'gpu'
    union
    select distinct h.cluster, 'host' as component, {{ host_pool('p.attribution_level', 'h.node') }} as pool
    from hardware as h
    inner join params as p on h.cluster = p.cluster
),

final as (
    select
        {{ partition_day() }} as day,
        cluster,
        component,
        pool,
        cast(row_number() over (order by cluster, component, pool) - 1 as bigint) as pool_index
    from pools
)

select * from final
