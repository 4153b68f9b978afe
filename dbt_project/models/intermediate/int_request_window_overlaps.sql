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
        p.attribution_level,
        {{ partition_day_epoch_s() }} as day0_s,
        cast(ceil(86400 / p.window_s) as bigint) as windows_per_day
    from requests as r
    inner join params as p on r.cluster = p.cluster
    where r.duration_s > 0
),

windowed as (
    select
        b.*,
        cast(floor((b.t0_s - b.day0_s) / b.window_s) as bigint) as first_window,
        cast(ceil((b.t1_s - b.day0_s) / b.window_s) as bigint) - 1 as last_window
    from bounded as b
),

expanded as (
    -- a request inside one window needs no expansion (the common case for short requests)
    select w.*, w.first_window as window_index
    from windowed as w
    where w.first_window = w.last_window
    union all
    select
        w.*,
        unnest(generate_series(
            greatest(w.first_window, 0), least(w.last_window, w.windows_per_day - 1)
        )) as window_index
    from windowed as w
    where w.first_window <> w.last_window
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
        least(t1_s, day0_s + (window_index + 1) * window_s, day0_s + 86400)
        - greatest(t0_s, day0_s + window_index * window_s) as overlap_s,
        tokens / duration_s as tokens_per_s
    from expanded
    where window_index between 0 and windows_per_day - 1
)

select * from final
where overlap_s > 0
