{{ config(pre_hook="{{ delete_partition('day') }}") }}

-- Overlap o_i,w: seconds of request i inside window w of the day (METHODOLOGY section 3), with the pools the
-- request draws from (its GPU / node when the day's attribution level uses them, else the whole cluster).

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

bounded as (
    select
        r.request_id,
        r.cluster,
        r.node,
        r.gpu,
        {{ epoch_s('r.start_time') }} as t0_s,
        {{ epoch_s('r.start_time') }} + r.duration_s as t1_s,
        r.duration_s,
        coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) as tokens,
        p.window_s,
        p.attribution_level
    from requests as r
    inner join params as p on r.cluster = p.cluster
    where r.duration_s > 0
),

request_windows as (
    {{ split_by_window('bounded') }}
),

final as (
    select
        {{ partition_day() }} as day,
        request_id,
        cluster,
        window_index,
        case attribution_level
            when 'gpu' then node || '/' || gpu
            when 'node' then node
            else '*'
        end as gpu_pool,
        case when attribution_level in ('gpu', 'node') then node else '*' end as host_pool,
        overlap_s,
        window_length_s,
        tokens / duration_s as tokens_per_s
    from request_windows
)

select * from final
