{%- set fits = energy_model_fits_relation() %}
{%- set image_fits = image_model_fits_relation() %}
{#- a day without image requests or LoRA adapters compiles without the image parts (macros/images.sql) -#}
{%- set image_day = has_image_requests() %}
{%- set image = "i.modality = 'image'" if image_day else 'false' %}
{#- what the table keeps of each request -#}
{%- set request_columns = [
    'request_key', 'request_id', 'cluster', 'model', 'start_time', 'end_time', 'duration_s', 'input_tokens',
    'output_tokens', 'tenant', 'endpoint', 'node', 'gpu', 'attribution_level'] %}
{#- an image request's fields (and a text request's LoRA adapters), joined in after the attribution -#}
{%- set image_columns = image_field_names() %}

-- Each request on each UTC day it ran in (one row for almost every request; two for one that runs past
-- midnight): what it is, the energy attributed to it that day (METHODOLOGY section 3) and that energy's impact
-- (section 5). marts.fct_request_energy and marts.fct_request_impact are views over this table that add up the
-- days of a request; re-materialising a day replaces only that day's rows.
-- Stored as one Parquet file per day (materialization parquet_partition) holding the columns of `stored` below;
-- the sums, totals and factor x energy products of `final` are derived from them when read
-- (request_day_derived_columns() in macros/request_days.sql), in this query and in the table's view alike.
--
-- Energy, per pool-window w the request ran in (its GPU pool and its host pool), from its overlap o_i,w:
--   idle share    = o x idle_w / RS_w
--   dynamic share = o x dyn_w / RS_w, or token-weighted (var dynamic_share = tokens)
--   unallocated   = energy of the day's pool-windows no request touched, spread over the cluster's requests of
--                   the day in proportion to their request-seconds (kept in its own column)
-- A request inside one or two windows (97 % of the 5 M benchmark day at 15 s) needs no expansion or aggregation: its
-- one or two overlaps are shared in line. Longer requests' overlaps are expanded, shared and summed per request,
-- and joined to the one pipeline over the day's requests that writes the table. A request with zero duration
-- gets no energy (it is still listed).
-- Impact, each share at the factors of the pool-window it came from:
--   carbon        = energy x the grid intensity of the window's hour (the unallocated part: of the hours the
--                   unallocated energy was consumed in), x PUE; market-based likewise where a factor exists
--   embodied      = the hardware's embodied carbon and water per provisioned second, shared like idle energy
--   water         = on-site WUE x IT energy + EWIF x facility energy + embodied water (+ training water)
--   predicted     = time no telemetry covers gets the energy of the latest energy model for its model and
--                   hardware (models.energy_model_fits, paper form; statsmodels' 95 % prediction interval) in
--                   proportion to the uncovered seconds, priced at the grid intensity of the hour it started; an
--                   image request's from models.image_model_fits (the selected form; macros/images.sql)
--   training      = the model's monthly rate (intermediate.int_model_training_rates) x inferences, on the day the
--                   request started: output tokens + 1 (text), images generated (image); fine-tuning adds each
--                   LoRA adapter's own monthly rate x the same inferences (an adapter without a factor row is
--                   listed in adapters_without_factor, never charged zero silently)
-- Bounds (_low/_high): every factor range and the prediction interval at the same end together.

-- (sqlfluff's dbt templater mis-tracks the indent after this model's Jinja call blocks and image branches)
-- noqa: disable=LT02
with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

requests as {{ not_materialized() }} (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

{% if image_day -%}
    image_requests as (
    -- the day's image requests and the requests that name LoRA adapters, with their fields
        select
            request_key,
            cluster,
            model,
            start_time,
            {%- for col in image_columns %}
                {{ col }}{% if not loop.last %},{% endif %}
            {%- endfor %}
        from requests
        where modality = 'image' or lora is not null
    ),

{% endif -%}
clusters as (
    select * from {{ ref('stg_raw__clusters') }}
),

pools as (
    select * from {{ ref('int_cluster_day_pools') }}
    where day = {{ partition_day() }}
),

request_pools as (
    select * from {{ ref('int_request_pools') }}
    where day = {{ partition_day() }}
),

pool_impact as (
    select * from {{ ref('int_pool_window_impact') }}
    where day = {{ partition_day() }}
),

loads as (
    select * from {{ ref('int_pool_window_load') }}
    where day = {{ partition_day() }} and pool_window_key is not null
),

factors as (
    select * from {{ ref('int_cluster_day_factors') }}
    where day = {{ partition_day() }}
),

start_hours as (
    -- grid intensity of the hour a request started (prices its predicted energy): the partition day's hours and
    -- the day before's (a request that ran past midnight started then)
    select * from {{ ref('int_cluster_hour_intensity') }}
    where day between {{ partition_day() }} - 1 and {{ partition_day() }}
),

fits as (
    {%- if fits is not none %}
        {% call first_row_per(model_key('model') ~ ', lower(hardware)', "(source = 'telemetry') desc, fitted_at desc") %}
        select
            {{ model_key('model') }} as model_key,
            lower(hardware) as hardware_key,
            source || ' fit of ' || {{ format_utc_timestamp('fitted_at') }} || ' (n=' || nobs || ')' as fit_label,
            alpha_in, alpha_out, alpha_in_out,
            cov_in_in, cov_in_out, cov_in_in_out, cov_out_out, cov_out_in_out, cov_in_out_in_out,
            resid_variance, t_975
        from {{ fits }}
        where
            target = 'energy' and form = 'paper' and t_975 is not null and alpha_in is not null
        {% endcall %}
    {%- else %}
        select
            cast(null as {{ type_string() }}) as model_key,
            cast(null as {{ type_string() }}) as hardware_key,
            cast(null as {{ type_string() }}) as fit_label,
            cast(null as double) as alpha_in, cast(null as double) as alpha_out, cast(null as double) as alpha_in_out,
            cast(null as double) as cov_in_in,
            cast(null as double) as cov_in_out,
            cast(null as double) as cov_in_in_out,
            cast(null as double) as cov_out_out,
            cast(null as double) as cov_out_in_out,
            cast(null as double) as cov_in_out_in_out,
            cast(null as double) as resid_variance, cast(null as double) as t_975
        where false
    {%- endif %}
),

image_fits as (
    -- the latest image fit of the selected form per model and hardware (telemetry preferred), prefixed img_
    {%- if image_fits is not none %}
        {% call first_row_per(
            model_key('model') ~ ', lower(hardware)', "(source = 'telemetry') desc, fitted_at desc"
        ) -%}
        select
            {{ model_key('model') }} as model_key,
            lower(hardware) as hardware_key,
            source || ' image fit of ' || {{ format_utc_timestamp('fitted_at') }} || ' (n=' || nobs || ', form '
            || form || ')' as img_fit_label,
            {%- for t in image_terms() %}
                alpha_{{ t }} as img_alpha_{{ t }},
            {%- endfor %}
            {%- for a in image_terms() %}
                {%- set i = loop.index0 %}
                {%- for b in image_terms()[i:] %}
                    cov_{{ a }}_{{ b }} as img_cov_{{ a }}_{{ b }},
                {%- endfor %}
            {%- endfor %}
            resid_variance as img_resid_variance,
            t_975 as img_t_975
        from {{ image_fits }}
        where target = 'energy' and selected and t_975 is not null
        {%- endcall %}
    {%- else %}
        select
            cast(null as {{ type_string() }}) as model_key,
            cast(null as {{ type_string() }}) as hardware_key,
            cast(null as {{ type_string() }}) as img_fit_label,
            {%- for t in image_terms() %}
                cast(null as double) as img_alpha_{{ t }},
            {%- endfor %}
            {%- for a in image_terms() %}
                {%- set i = loop.index0 %}
                {%- for b in image_terms()[i:] %}
                    cast(null as double) as img_cov_{{ a }}_{{ b }},
                {%- endfor %}
            {%- endfor %}
            cast(null as double) as img_resid_variance,
            cast(null as double) as img_t_975
        where false
    {%- endif %}
),

model_names as (
    -- each model name of the day once, with its factor-table key and hardware, for the model-level joins below
    select
        n.cluster,
        n.model,
        {{ model_key('n.model') }} as model_key,
        c.gpu_model as hardware
    from (select distinct cluster, model from requests) as n
    inner join clusters as c on n.cluster = c.cluster
),

model_aliases as (
    select distinct alias_key, factor_model from {{ ref('stg_factors__models') }}
),

model_fits as (
    -- each model name of the day with the fit for its model and hardware (none: no fit yet)
    select
        mn.cluster, mn.model, mn.model_key as factor_model_key, p.*
    from model_names as mn
    left join fits as p on mn.model_key = p.model_key and lower(mn.hardware) = p.hardware_key
),

training as (
    select
        a.alias_key,
        t.factor_model,
        t.month,
        t.training_g_co2e_per_inference,
        t.fine_tuning_g_co2e_per_inference,
        t.training_water_l_per_inference + t.fine_tuning_water_l_per_inference as training_water_l_per_inference
    from {{ ref('int_model_training_rates') }} as t
    inner join model_aliases as a on t.factor_model = a.factor_model
),

{#- rates per request-second (token-second) of a pool-window: (name, numerator of pool_impact p, load of l) -#}
{%- set rates = [
    ('idle_per_s', 'p.idle_energy_j', 'l.request_seconds'),
    ('dynamic_per_s', 'p.dynamic_energy_j', 'l.request_seconds'),
    ('embodied_per_s', 'p.embodied_g', 'l.request_seconds'),
    ('embodied_low_per_s', 'p.embodied_low_g', 'l.request_seconds'),
    ('embodied_high_per_s', 'p.embodied_high_g', 'l.request_seconds'),
    ('water_per_s', 'p.water_l', 'l.request_seconds'),
    ('water_low_per_s', 'p.water_low_l', 'l.request_seconds'),
    ('water_high_per_s', 'p.water_high_l', 'l.request_seconds')] %}

fallback_members as (
    -- (rare) the fallback pools the day's requests draw from, with their members (int_cluster_day_pools)
    select m.*
    from ({{ pool_members('pools') }}) as m
    inner join pools as p on m.target_index = p.pool_index and p.is_fallback
    semi join request_pools as rp on m.target_index in (rp.gpu_pool_index, rp.host_pool_index)
),

{% if image_day -%}
    {#- the image request's fields, and its adapters without a factor row, as one JSON object -#}
    {%- set image_json_fields = [] %}
    {%- for col in image_columns %}{% do image_json_fields.append((col, 'i.' ~ col)) %}{% endfor %}
    {%- do image_json_fields.append(('adapters_without_factor', 'ar.adapters_without_factor')) %}
    adapter_rates as (
    -- LoRA adapters: each (adapter list, start month) of the day's requests that name adapters (none on a text
    -- day without them) with the sum of its adapters' fine-tuning rates for that month, and the adapters that
    -- have no factor row
        select
            u.lora,
            u.month,
            sum(t.fine_tuning_g_co2e_per_inference) as fine_tuning_g_co2e_per_inference,
            sum(t.fine_tuning_water_l_per_inference) as fine_tuning_water_l_per_inference,
            {{ sorted_list_agg('u.adapter', 'a.factor_model is null') }} as adapters_without_factor
        from (
            select distinct
                lora,
                cast(date_trunc('month', start_time) as date) as month,
                {{ explode_list('lora') }} as adapter
            from requests
            where lora is not null
        ) as u
        left join model_aliases as a on {{ model_key('u.adapter') }} = a.alias_key
        left join {{ ref('int_model_training_rates') }} as t on a.factor_model = t.factor_model and u.month = t.month
        group by u.lora, u.month
    ),

    image_side as (
    -- per image request (and request naming LoRA adapters) of the day: the image fit's energy for the whole
    -- request and its prediction interval, its adapters' fine-tuning rates for the month it started, and its fields
    -- as one JSON text column (a text day writes one empty column instead of twelve; the marts unpack it)
        select
            i.request_key,
            i.modality,
            i.images,
            {{ image_prediction_mean('f', 'i', 'img_') | indent(8) }} as predicted_j,
            {{ image_prediction_half_width('f', 'i', 'img_') | indent(8) }} as prediction_half_width_j,
            f.img_fit_label as fit_label,
            ar.fine_tuning_g_co2e_per_inference as adapter_g_co2e_per_inference,
            ar.fine_tuning_water_l_per_inference as adapter_water_l_per_inference,
            {{ json_object(image_json_fields) | indent(12) }} as image_fields
        from image_requests as i
        left join model_names as mn on i.cluster = mn.cluster and i.model = mn.model
        left join image_fits as f on mn.model_key = f.model_key and lower(mn.hardware) = f.hardware_key
        left join adapter_rates as ar
            on i.lora = ar.lora and ar.month = cast(date_trunc('month', i.start_time) as date)
    ),

{% endif -%}
pool_rates as {{ materialized() }} (
    -- per pool-window with telemetry that requests ran in: energy, embodied carbon and water per request-second
    -- (dynamic energy per token-second too), the window's grid intensity, its load and its dynamic energy
    select
        p.pool_window_key,
        p.component,
        {%- for name, numerator, load in rates %}
            {{ numerator }} / {{ load }} as {{ name }},
        {%- endfor %}
        {% if var('dynamic_share') == 'tokens' -%}
            case when l.token_seconds > 0 then p.dynamic_energy_j / l.token_seconds end as dynamic_per_token_s,
        {%- else -%}
            cast(null as double) as dynamic_per_token_s,
        {%- endif %}
        p.ci,
        p.ci_low,
        p.ci_high,
        p.ci_market,
        p.annual_factor,
        l.request_seconds,
        l.requests,
        p.dynamic_energy_j,
        1.0 as covered_share
    from pool_impact as p
    inner join loads as l on p.pool_window_key = l.pool_window_key
    union all
    -- (rare) a request in a fallback pool (its own GPU or node sent no telemetry that day) draws the sum of its
    -- members' rates over their number: int_pool_window_load counted it in each member for that part of its time,
    -- so the members' energy is shared exactly once
    select
        f.target_index * 86400 + (l.pool_window_key - f.member_index * 86400) as pool_window_key,
        any_value(p.component) as component,
        {%- for name, numerator, load in rates %}
            sum(f.weight * {{ numerator }} / {{ load }}) as {{ name }},
        {%- endfor %}
        {% if var('dynamic_share') == 'tokens' -%}
            sum(case when l.token_seconds > 0 then f.weight * p.dynamic_energy_j / l.token_seconds end)
                as dynamic_per_token_s,
        {%- else -%}
            cast(null as double) as dynamic_per_token_s,
        {%- endif %}
        any_value(p.ci) as ci,
        any_value(p.ci_low) as ci_low,
        any_value(p.ci_high) as ci_high,
        any_value(p.ci_market) as ci_market,
        bool_or(p.annual_factor) as annual_factor,
        sum(f.weight * l.request_seconds) as request_seconds,
        max(l.requests) as requests,
        sum(p.dynamic_energy_j) as dynamic_energy_j,
        sum(f.weight) as covered_share
    from fallback_members as f
    inner join loads as l on {{ int_div('l.pool_window_key', 86400) }} = f.member_index
    inner join pool_impact as p on l.pool_window_key = p.pool_window_key
    group by f.target_index, l.pool_window_key - f.member_index * 86400
),

-- (one hash table per component: a request's host pool-window is looked up in one a ninth the size)
gpu_rates as (
    select * from pool_rates
    where component = 'gpu'
),

host_rates as (
    select * from pool_rates
    where component = 'host'
),

spans as {{ not_materialized() }} (
    -- every request of the day with its time in the day and the windows it touches. Not materialised: each use
    -- below reads the columns it needs, and a materialised copy of 5 M requests would copy them all.
    -- A request inside one window (most of them) needs no expansion and no aggregation; one with no time in the
    -- day (zero duration) gets no energy, but is listed.
    select
        r.*,
        p.window_s,
        coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) as tokens,
        greatest({{ epoch_s('r.start_time') }}, {{ partition_day_epoch_s() }}) as t0_s,
        least({{ epoch_s('r.start_time') }} + r.duration_s, {{ partition_day_epoch_s() }} + 86400) as t1_s,
        cast(floor(
            (greatest({{ epoch_s('r.start_time') }}, {{ partition_day_epoch_s() }}) - {{ partition_day_epoch_s() }})
            / p.window_s
        ) as bigint) as first_window,
        cast(ceil(
            (
                least({{ epoch_s('r.start_time') }} + r.duration_s, {{ partition_day_epoch_s() }} + 86400)
                - {{ partition_day_epoch_s() }}
            )
            / p.window_s
        ) as bigint) - 1 as last_window,
        -- it has time in the day, on a cluster with the day's parameters
        coalesce(
            p.window_s is not null and r.duration_s > 0
            and least({{ epoch_s('r.start_time') }} + r.duration_s, {{ partition_day_epoch_s() }} + 86400)
            > greatest({{ epoch_s('r.start_time') }}, {{ partition_day_epoch_s() }}),
            false
        ) as in_day
    from requests as r
    left join params as p on r.cluster = p.cluster
),

windowed_spans as {{ not_materialized() }} (
    select
        *,
        in_day and first_window < last_window as multi_window,
        in_day and last_window > first_window + 1 as long_span
    from spans
),

pooled_spans as {{ not_materialized() }} (
    -- the request's GPU pool and host pool (its own, or a fallback when its own sent no telemetry that day; null:
    -- its cluster sent none) and the level it is attributed at (int_request_pools)
    select
        s.*,
        rp.gpu_pool_index,
        rp.host_pool_index,
        coalesce(rp.attribution_level, 'none') as attribution_level
    from windowed_spans as s
    left join request_pools as rp
        on s.cluster = rp.cluster and s.node is not distinct from rp.node and s.gpu is not distinct from rp.gpu
),

{#- a request's energy and impact from its overlaps' shares (@: the prefix of the overlap's share columns) -#}
{%- set sums = {
    'request_seconds': '@overlap_s',
    'concurrency_seconds': '@concurrency_seconds',
    'telemetry_covered_s': '@telemetry_covered_s',
    'accelerator_idle_energy_j': '@gpu_idle_j',
    'accelerator_dynamic_energy_j': '@gpu_dynamic_j',
    'host_idle_energy_j': '@host_idle_j',
    'host_dynamic_energy_j': '@host_dynamic_j',
    'location_g': '@energy_j * @ci / 3.6e6',
    'location_low_g': '@energy_j * @ci_low / 3.6e6',
    'location_high_g': '@energy_j * @ci_high / 3.6e6',
    'market_g': '@energy_j * coalesce(@ci_market, @ci) / 3.6e6',
    'market_factor_j': 'case when @ci_market is not null then @energy_j else 0 end',
    'annual_factor_j': 'case when @annual_factor then @energy_j else 0 end',
    'embodied_g': '@embodied_g',
    'embodied_low_g': '@embodied_low_g',
    'embodied_high_g': '@embodied_high_g',
    'water_l': '@water_l',
    'water_low_l': '@water_low_l',
    'water_high_l': '@water_high_l',
    'pool_dynamic_energy_j': '@pool_dynamic_energy_j',
} %}

short_span_shares as (
    -- every request's shares if it ran in one or two windows (none if it had no time in the day): its first
    -- window's (a_) and its second's (b_, zero for a request inside one window). Two windows is most of the
    -- requests that cross a window boundary: shared in line, they need no expansion and no aggregation. The
    -- longer ones' overlaps are expanded below.
    select
        {%- for col in request_columns %}
            o.{{ col }},
        {%- endfor %}
        o.long_span,
        {{ overlap_shares('o.a_overlap_s', 'o.a_window_length_s', 'o.tokens_per_s', 'ga', 'ha', 'a_') | indent(8) }},
        {{ overlap_shares('o.b_overlap_s', 'o.b_window_length_s', 'o.tokens_per_s', 'gb', 'hb', 'b_') | indent(8) }}
    from (
        select
            *,
            -- (an overlap that rounding leaves at zero or below counts for nothing, as in the expansion)
            case when a_raw_s > 0 then a_raw_s else 0 end as a_overlap_s,
            case when b_raw_s > 0 then b_raw_s else 0 end as b_overlap_s,
            case when a_raw_s > 0 then {{ pool_window_key('gpu_pool_index', 'first_window') }} end
                as a_gpu_pool_window_key,
            case when a_raw_s > 0 then {{ pool_window_key('host_pool_index', 'first_window') }} end
                as a_host_pool_window_key,
            case when b_raw_s > 0 then {{ pool_window_key('gpu_pool_index', 'first_window + 1') }} end
                as b_gpu_pool_window_key,
            case when b_raw_s > 0 then {{ pool_window_key('host_pool_index', 'first_window + 1') }} end
                as b_host_pool_window_key
        from (
            select
                *,
                case
                    when not in_day or long_span then 0
                    when not multi_window then t1_s - t0_s
                    else {{ window_overlap('first_window') | indent(20) }}
                end as a_raw_s,
                case
                    when in_day and multi_window and not long_span then {{ window_overlap('first_window + 1') }}
                    else 0
                end as b_raw_s,
                least(window_s, 86400 - first_window * window_s) as a_window_length_s,
                least(window_s, 86400 - (first_window + 1) * window_s) as b_window_length_s,
                case when in_day and not long_span then tokens / duration_s end as tokens_per_s
            from pooled_spans
        )
    ) as o
    left join gpu_rates as ga on o.a_gpu_pool_window_key = ga.pool_window_key
    left join host_rates as ha on o.a_host_pool_window_key = ha.pool_window_key
    left join gpu_rates as gb on o.b_gpu_pool_window_key = gb.pool_window_key
    left join host_rates as hb on o.b_host_pool_window_key = hb.pool_window_key
),

short_span_sums as (
    -- the two overlaps' shares added up as sum() would: a null share counts for nothing
    select
        {%- for col in request_columns %}
            {{ col }},
        {%- endfor %}
        long_span,
        {%- for name, expr in sums.items() %}
            coalesce(
                ({{ expr | replace('@', 'a_') }}) + ({{ expr | replace('@', 'b_') }}),
                {{ expr | replace('@', 'a_') }},
                {{ expr | replace('@', 'b_') }}
            ) as {{ name }},
        {%- endfor %}
        greatest(a_pool_requests, b_pool_requests) as max_pool_requests
    from (
        select *, {{ share_energy('a_') }} as a_energy_j, {{ share_energy('b_') }} as b_energy_j
        from short_span_shares
    )
),

long_span_overlaps as (
    -- o_i,w of the requests that span three windows or more: one row per request and window
    select
        request_key,
        {{ window_overlap('window_index') | indent(4) }} as overlap_s,
        least(window_s, 86400 - window_index * window_s) as window_length_s,
        tokens / duration_s as tokens_per_s,
        {{ pool_window_key('gpu_pool_index', 'window_index') }} as gpu_pool_window_key,
        {{ pool_window_key('host_pool_index', 'window_index') }} as host_pool_window_key
    from (
        select
            request_key, t0_s, t1_s, window_s, tokens, duration_s, gpu_pool_index, host_pool_index,
            {{ explode_range('first_window', 'last_window') }} as window_index
        from pooled_spans
        where long_span
    ) as by_window
    where {{ window_overlap('window_index') | indent(4) }} > 0
),

long_span_sums as (
    -- the requests that span three windows or more: their overlaps' shares, summed
    select
        request_key,
        {%- for name, expr in sums.items() %}
            sum({{ expr | replace('@', '') }}) as {{ name }},
        {%- endfor %}
        max(pool_requests) as max_pool_requests
    from (
        select *, {{ share_energy('') }} as energy_j
        from (
            select
                o.request_key,
                {{ overlap_shares('o.overlap_s', 'o.window_length_s', 'o.tokens_per_s', 'g', 'h', '') | indent(16) }}
            from long_span_overlaps as o
            left join gpu_rates as g on o.gpu_pool_window_key = g.pool_window_key
            left join host_rates as h on o.host_pool_window_key = h.pool_window_key
        ) as shares
    )
    group by request_key
),

attributed as (
    -- every request of the day once, with its attributed shares (one pipeline over the requests, no union: a
    -- union feeding the insert into the warehouse file makes DuckDB write half of it on one thread)
    select
        {%- for col in request_columns %}
            s.{{ col }},
        {%- endfor %}
        {%- for name in sums %}
            case when s.long_span then coalesce(m.{{ name }}, 0) else s.{{ name }} end as {{ name }},
        {%- endfor %}
        case when s.long_span then coalesce(m.max_pool_requests, 0) else s.max_pool_requests end
            as max_pool_requests
    from short_span_sums as s
    left join long_span_sums as m on s.request_key = m.request_key
),

unallocated as (
    -- the pool-windows no request touched: their energy, its carbon, and the embodied carbon and water of the
    -- hardware idling in them, per cluster
    select
        p.cluster,
        sum(p.energy_j) as energy_j,
        sum(p.energy_j * p.ci) / 3.6e6 as location_g,
        sum(p.energy_j * p.ci_low) / 3.6e6 as location_low_g,
        sum(p.energy_j * p.ci_high) / 3.6e6 as location_high_g,
        sum(p.energy_j * coalesce(p.ci_market, p.ci)) / 3.6e6 as market_g,
        sum(case when p.ci_market is not null then p.energy_j else 0 end) as market_factor_j,
        sum(case when p.annual_factor then p.energy_j else 0 end) as annual_factor_j,
        sum(p.embodied_g) as embodied_g,
        sum(p.embodied_low_g) as embodied_low_g,
        sum(p.embodied_high_g) as embodied_high_g,
        sum(p.water_l) as water_l,
        sum(p.water_low_l) as water_low_l,
        sum(p.water_high_l) as water_high_l
    from pool_impact as p
    anti join loads as l on p.pool_window_key = l.pool_window_key
    group by p.cluster
),

cluster_seconds as (
    -- the request-seconds the unallocated part is spread over: each request's time in the day, which is what
    -- its overlaps add up to (the window boundaries split it exactly: Sterbenz)
    select cluster, sum(t1_s - t0_s) as request_seconds
    from spans
    where in_day
    group by cluster
),

measured as (
    -- every request of the day (those with no time in it too), with its attributed shares and its
    -- request-seconds share of the cluster's unallocated energy and impact
    select
        {%- for col in request_columns %}
            a.{{ col }},
        {%- endfor %}
        -- time in this day (a request that runs past midnight has a part in each day); exactly its duration when
        -- it ran within the day (epoch seconds ~1.7e9 carry rounding of ~1e-7 s)
        case
            when
                a.start_time >= cast({{ partition_day() }} as timestamp)
                and a.end_time <= cast({{ partition_day() }} + 1 as timestamp)
                then a.duration_s
            else greatest(
                least({{ epoch_s('a.start_time') }} + a.duration_s, {{ partition_day_epoch_s() }} + 86400)
                - greatest({{ epoch_s('a.start_time') }}, {{ partition_day_epoch_s() }}),
                0
            )
        end as part_s,
        coalesce(a.request_seconds, 0) as request_seconds,
        coalesce(a.concurrency_seconds, 0) as concurrency_seconds,
        coalesce(a.telemetry_covered_s, 0) as telemetry_covered_s,
        coalesce(a.accelerator_idle_energy_j, 0) as accelerator_idle_energy_j,
        coalesce(a.accelerator_dynamic_energy_j, 0) as accelerator_dynamic_energy_j,
        coalesce(a.host_idle_energy_j, 0) as host_idle_energy_j,
        coalesce(a.host_dynamic_energy_j, 0) as host_dynamic_energy_j,
        -- the cluster-day's unallocated energy per request-second (a request's share: its request-seconds times it)
        u.energy_j / nullif(cs.request_seconds, 0) as unallocated_idle_energy_j_per_s,
        {%- for col in [
            'location_g', 'location_low_g', 'location_high_g', 'market_g', 'market_factor_j', 'annual_factor_j',
            'embodied_g', 'embodied_low_g', 'embodied_high_g', 'water_l', 'water_low_l', 'water_high_l'] %}
            coalesce(a.{{ col }}, 0)
            + coalesce(u.{{ col }} * a.request_seconds / nullif(cs.request_seconds, 0), 0) as {{ col }},
        {%- endfor %}
        cast(coalesce(a.max_pool_requests, 0) as bigint) as max_pool_requests,
        coalesce(a.pool_dynamic_energy_j, 0) as pool_dynamic_energy_j
    from attributed as a
    left join unallocated as u on a.cluster = u.cluster
    left join cluster_seconds as cs on a.cluster = cs.cluster
),

priced as (
    -- the day's factors, the fit for the uncovered time, the start hour's grid intensity and the training rate
    select
        m.*,
        {{ 'i.image_fields' if image_day else 'cast(null as ' ~ type_string() ~ ') as image_fields' }},
        cast({{ "case when i.modality = 'image' then i.images end" if image_day else 'null' }} as integer)
            as images_generated,
        n.factor_model_key,
        f.pue,
        f.pue_low,
        f.pue_high,
        f.wue_onsite_l_per_kwh,
        f.wue_low_l_per_kwh,
        f.wue_high_l_per_kwh,
        f.ewif_l_per_kwh,
        f.ewif_low_l_per_kwh,
        f.ewif_high_l_per_kwh,
        -- overlaps are computed from epoch seconds (~1.7e9): sub-millisecond differences are rounding, not gaps
        case when m.part_s - m.telemetry_covered_s > 1e-3 then m.part_s - m.telemetry_covered_s else 0 end
            as uncovered_s,
        -- an image request: its image fit's prediction (image_side; `image` is false on a day without images)
        case
            when {{ image }} then {{ 'i.predicted_j' if image_day else 'null' }}
            else
                n.alpha_in * m.input_tokens + n.alpha_out * m.output_tokens
                + n.alpha_in_out * m.input_tokens * m.output_tokens
        end as predicted_j,
        case
            when {{ image }} then {{ 'i.prediction_half_width_j' if image_day else 'null' }}
            else n.t_975 * sqrt(
                n.resid_variance
                + n.cov_in_in * m.input_tokens * m.input_tokens
                + n.cov_out_out * m.output_tokens * m.output_tokens
                + n.cov_in_out_in_out * power(m.input_tokens * m.output_tokens, 2)
                + 2 * n.cov_in_out * m.input_tokens * m.output_tokens
                + 2 * n.cov_in_in_out * m.input_tokens * m.input_tokens * m.output_tokens
                + 2 * n.cov_out_in_out * m.output_tokens * m.input_tokens * m.output_tokens
            )
        end as prediction_half_width_j,
        case when {{ image }} then {{ 'i.fit_label' if image_day else 'null' }} else n.fit_label end as fit_label,
        h.location_g_co2e_per_kwh as start_ci,
        h.location_low_g_co2e_per_kwh as start_ci_low,
        h.location_high_g_co2e_per_kwh as start_ci_high,
        h.market_g_co2e_per_kwh as start_ci_market,
        h.resolution = 'annual' as start_annual,
        t.factor_model,
        t.training_g_co2e_per_inference,
        t.fine_tuning_g_co2e_per_inference,
        t.training_water_l_per_inference,
        {%- if image_day %}
            i.adapter_g_co2e_per_inference,
            i.adapter_water_l_per_inference
        {%- else %}
            cast(null as double) as adapter_g_co2e_per_inference,
            cast(null as double) as adapter_water_l_per_inference
        {%- endif %}
    from measured as m
    {% if image_day -%}
        left join image_side as i on m.request_key = i.request_key
    {% endif -%}
    left join factors as f on m.cluster = f.cluster
    left join model_fits as n on m.cluster = n.cluster and m.model = n.model
    left join start_hours as h on m.cluster = h.cluster and date_trunc('hour', m.start_time) = h.hour_start
    left join training as t
        on n.factor_model_key = t.alias_key and t.month = cast(date_trunc('month', m.start_time) as date)
),

predicted as (
    select
        *,
        coalesce(uncovered_s / duration_s * predicted_j, 0) as predicted_it_j,
        coalesce(uncovered_s / duration_s * greatest(predicted_j - prediction_half_width_j, 0), 0)
            as predicted_it_low_j,
        coalesce(uncovered_s / duration_s * (predicted_j + prediction_half_width_j), 0) as predicted_it_high_j
    from priced
),

impact as (
    -- the predicted energy's carbon, at the grid intensity of the hour the request started (null when that hour has
    -- no grid factor: impact_factor_coverage warns)
    select
        *,
        case when predicted_it_j > 0 then predicted_it_j * start_ci / 3.6e6 else 0 end as predicted_location_g_co2e,
        case when predicted_it_low_j > 0 then predicted_it_low_j * start_ci_low / 3.6e6 else 0 end
            as predicted_location_low_g_co2e,
        case when predicted_it_high_j > 0 then predicted_it_high_j * start_ci_high / 3.6e6 else 0 end
            as predicted_location_high_g_co2e,
        case
            when predicted_it_j > 0 and start_ci_market is not null then predicted_it_j * start_ci_market / 3.6e6
        end as predicted_market_g_co2e,
        annual_factor_j + case when start_annual then predicted_it_j else 0 end as annual_factor_energy_j
    from predicted
),

stored as (
    -- What the table stores of each request-day: its attributes, the parts of its energy and impact, and the
    -- factors they are multiplied by (constant over a cluster-day or a model-month: next to nothing stored). Sums,
    -- totals and factor x energy products are derived from these when read (request_day_derived_columns() in
    -- macros/request_days.sql), here and in the table's view alike, so they always add up. The ends of the bounds
    -- and the concurrency are kept in single precision (bounds rounded outward, so they stay bounds).
    select
        {{ partition_day() }} as day,
        request_key,
        request_id,
        cluster,
        model,
        start_time,
        duration_s,
        input_tokens,
        output_tokens,
        tenant,
        endpoint,
        node,
        gpu,
        -- image requests and LoRA adapters (JSON; null for a text request without adapters) and the images an
        -- image request generated (its inferences; null for text)
        image_fields,
        images_generated,
        cast(greatest(
            {{ days_between('cast(start_time as date)', 'cast(end_time - interval 1 microsecond as date)') }} + 1, 1
        ) as integer) as days_spanned,
        -- energy (METHODOLOGY section 3): the IT energy (the column analysts read most) and three of its attributed
        -- parts (the host's dynamic part is what remains); the unallocated part is the request-seconds times the
        -- cluster-day's rate
        request_seconds,
        {{ single_precision('concurrency_seconds') }} as concurrency_seconds,
        request_seconds - telemetry_covered_s as overlap_without_telemetry_s,
        (accelerator_idle_energy_j + host_idle_energy_j)
        + (accelerator_dynamic_energy_j + host_dynamic_energy_j)
        + coalesce(request_seconds * unallocated_idle_energy_j_per_s, 0) as it_energy_j,
        accelerator_idle_energy_j,
        accelerator_dynamic_energy_j,
        host_idle_energy_j,
        unallocated_idle_energy_j_per_s,
        max_pool_requests,
        -- (the single-request rule is checked on the requests alone in their pool-windows)
        case when max_pool_requests = 1 then pool_dynamic_energy_j end as pool_dynamic_energy_j,
        -- the energy model's estimate for the uncovered time
        uncovered_s,
        predicted_it_j as it_energy_predicted_j,
        predicted_it_low_j as it_energy_predicted_low_j,
        predicted_it_high_j as it_energy_predicted_high_j,
        case when uncovered_s > 0 then fit_label end as prediction_fit,
        -- impact (METHODOLOGY section 5) before PUE: the carbon of the IT energy at each window's hour; market-based
        -- where a market factor covered part of it (elsewhere it equals the location-based value, not stored again)
        location_g as it_location_g_co2e,
        {{ single_precision('location_low_g', 'down') }} as it_location_low_g_co2e,
        {{ single_precision('location_high_g', 'up') }} as it_location_high_g_co2e,
        case when market_factor_j > 0 then market_g end as it_market_g_co2e,
        predicted_location_g_co2e,
        predicted_location_low_g_co2e,
        predicted_location_high_g_co2e,
        predicted_market_g_co2e,
        market_factor_j as market_factor_energy_j,
        annual_factor_energy_j,
        embodied_g as embodied_g_co2e,
        {{ single_precision('embodied_low_g', 'down') }} as embodied_low_g_co2e,
        {{ single_precision('embodied_high_g', 'up') }} as embodied_high_g_co2e,
        water_l as water_embodied_l,
        {{ single_precision('water_low_l', 'down') }} as water_embodied_low_l,
        {{ single_precision('water_high_l', 'up') }} as water_embodied_high_l,
        -- the factors
        pue,
        pue_low,
        pue_high,
        wue_onsite_l_per_kwh,
        wue_low_l_per_kwh,
        wue_high_l_per_kwh,
        ewif_l_per_kwh,
        ewif_low_l_per_kwh,
        ewif_high_l_per_kwh,
        factor_model,
        training_g_co2e_per_inference,
        fine_tuning_g_co2e_per_inference,
        training_water_l_per_inference,
        -- the LoRA adapters' summed fine-tuning rates (null without adapters)
        adapter_g_co2e_per_inference,
        adapter_water_l_per_inference,
        -- the level the request's energy was attributed at: its GPU, node or cluster (lower than the day's when its
        -- own GPU or node sent no telemetry), or none (docs/telemetry-faults.md)
        attribution_level
    from impact
),

final as (
    {{ select_with_derived('stored', request_day_derived_columns()) | indent(4) }}
)

select * from final
-- noqa: enable=LT02
