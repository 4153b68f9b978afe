{{ config(materialized='view') }}

-- Overlap o_i,w: seconds of request i inside window w of the day (METHODOLOGY section 3), with the pools the
-- request draws from (its GPU / node when the day's attribution level uses them, else the whole cluster; a fallback
-- pool when its own sent no telemetry: int_request_pools) and their pool-window keys (null where the request's
-- cluster has no telemetry that day). A view: int_pool_window_load sums it per pool-window; int_request_days expands
-- only the requests that span more than one window.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

request_pools as (
    select * from {{ ref('int_request_pools') }}
    where day = {{ partition_day() }}
),

bounded as (
    select
        r.request_key,
        r.request_id,
        r.cluster,
        r.node,
        r.gpu,
        {{ epoch_s('r.start_time') }} as t0_s,
        {{ epoch_s('r.start_time') }} + r.duration_s as t1_s,
        r.duration_s,
        coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) as tokens,
        p.window_s
    from requests as r
    inner join params as p on r.cluster = p.cluster
    where r.duration_s > 0
),

with_pools as (
    -- the pools' indices, once per request (not per overlap)
    select b.*, rp.gpu_pool, rp.host_pool, rp.gpu_pool_index, rp.host_pool_index
    from bounded as b
    left join request_pools as rp
        on b.cluster = rp.cluster and b.node is not distinct from rp.node and b.gpu is not distinct from rp.gpu
),

request_windows as (
    {{ split_by_window('with_pools') }}
),

final as (
    select
        {{ partition_day() }} as day,
        request_key,
        request_id,
        cluster,
        window_index,
        gpu_pool,
        host_pool,
        {{ pool_window_key('gpu_pool_index', 'window_index') }} as gpu_pool_window_key,
        {{ pool_window_key('host_pool_index', 'window_index') }} as host_pool_window_key,
        overlap_s,
        window_length_s,
        tokens / duration_s as tokens_per_s
    from request_windows
)

select * from final
