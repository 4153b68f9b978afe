{#-
    Split time spans over the partition day's windows (METHODOLOGY sections 2-3): one row per span and window it
    overlaps, with window_index, window_start_s, window_length_s (the last window of a day may be shorter) and
    overlap_s > 0, clipped to the day. `spans` is a relation or CTE with t0_s, t1_s (epoch seconds) and window_s.
    Spans inside a single window (most scrape intervals and short requests) skip the expansion.
-#}
{% macro split_by_window(spans) -%}
    {#- (no materialised CTE of the bounds: each branch reads `spans` with only the columns downstream uses, which
        a materialised CTE of millions of rows, strings included, would copy whole) -#}
    {%- set bounds -%}
        select
            s.*,
            {{ partition_day_epoch_s() }} as day0_s,
            cast(ceil(86400 / s.window_s) as bigint) as windows_per_day,
            cast(floor((s.t0_s - {{ partition_day_epoch_s() }}) / s.window_s) as bigint) as first_window,
            cast(ceil((s.t1_s - {{ partition_day_epoch_s() }}) / s.window_s) as bigint) - 1 as last_window
        from {{ spans }} as s
    {%- endset -%}
    select
        e.*,
        e.day0_s + e.window_index * e.window_s as window_start_s,
        least(e.window_s, 86400 - e.window_index * e.window_s) as window_length_s,
        least(e.t1_s, e.day0_s + (e.window_index + 1) * e.window_s, e.day0_s + 86400)
        - greatest(e.t0_s, e.day0_s + e.window_index * e.window_s) as overlap_s
    from (
        select b.*, b.first_window as window_index
        from ({{ bounds }}) as b
        where b.first_window = b.last_window
        union all
        select
            b.*,
            {{ explode_range('greatest(b.first_window, 0)', 'least(b.last_window, b.windows_per_day - 1)') }}
                as window_index
        from ({{ bounds }}) as b
        where b.first_window <> b.last_window
    ) as e
    where
        e.window_index between 0 and e.windows_per_day - 1
        and least(e.t1_s, e.day0_s + (e.window_index + 1) * e.window_s, e.day0_s + 86400)
        - greatest(e.t0_s, e.day0_s + e.window_index * e.window_s) > 0
{%- endmacro %}

{#-
    Attribution pools (METHODOLOGY section 3): the GPU component is pooled per GPU ('node/gpu'), per node or for the
    whole cluster ('*'), the host component per node or for the cluster, as the day's attribution level says.
-#}
{% macro gpu_pool(level, node, gpu) -%}
    case {{ level }} when 'gpu' then {{ node }} || '/' || {{ gpu }} when 'node' then {{ node }} else '*' end
{%- endmacro %}

{% macro host_pool(level, node) -%}
    case when {{ level }} in ('gpu', 'node') then {{ node }} else '*' end
{%- endmacro %}

{#- One integer per pool and window of a day (int_cluster_day_pools.pool_index; windows are at least 1 s long). -#}
{% macro pool_window_key(pool_index, window_index) -%}
    ({{ pool_index }} * 86400 + {{ window_index }})
{%- endmacro %}

{#-
    The pools a request's load goes to (int_cluster_day_pools): a pool itself (weight 1), or the members of a
    fallback pool, each for an equal part (1 / members). `pools` is a relation or CTE of the day's pools.
-#}
{% macro pool_members(pools) -%}
    select pool_index as target_index, pool_index as member_index, 1.0 as weight
    from {{ pools }}
    where not is_fallback
    union all
    select
        f.pool_index as target_index,
        m.pool_index as member_index,
        1.0 / count(*) over (partition by f.pool_index) as weight
    from {{ pools }} as f
    inner join {{ pools }} as m
        on
            f.cluster = m.cluster and f.component = m.component and not m.is_fallback
            and (m.node_pool_index = f.pool_index or m.cluster_pool_index = f.pool_index)
    where f.is_fallback
{%- endmacro %}
