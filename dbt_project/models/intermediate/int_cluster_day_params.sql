{%- set level_override = var('attribution_level') -%}
{%- if level_override not in (none, 'cluster', 'node', 'gpu') -%}
    {{ exceptions.raise_compiler_error("var attribution_level must be cluster, node or gpu, not " ~ level_override) }}
{%- endif %}

-- One row per cluster and day: the window length, GPU idle power (declared or estimated), attribution level and
-- the power ceilings telemetry is checked against, used by every downstream model of the day.
--   window_s: the median scrape interval of one GPU series, not counting the steps of duplicate scrapes: those
--       shorter than duplicate_scrape_within_s and than half the series' 90th percentile step (a second scraper's
--       copy of a sample is no scrape interval; a sampler every 0.1 s has no duplicates).
--   gpu_max_w: clusters.yml gpu_max_w, else factors.gpu_power for the longest GPU-model prefix that matches, else
--       its 'default' row; the ceiling is gpu_max_w x power_ceiling_margin (docs/telemetry-faults.md).

with clusters as (
    select * from {{ ref('stg_raw__clusters') }}
),

samples as (
    select * from {{ ref('stg_raw__telemetry_samples') }}
    where partition_day = {{ partition_day() }}
),

requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

gpu_power as (
    select * from {{ ref('stg_factors__gpu_power') }}
),

gpu_power_rows as (
    -- the longest GPU-model prefix that matches, else the 'default' row
    {% call first_row_per('c.cluster', "(g.hardware_key = 'default'), length(g.hardware_key) desc") -%}
    select c.cluster, g.hardware, g.max_power_w, g.source
    from clusters as c
    inner join gpu_power as g
        on {{ starts_with(gpu_model_key('c.gpu_model'), 'g.hardware_key') }} or g.hardware_key = 'default'
    {%- endcall %}
),

needs_idle_estimate as (
    select cluster from clusters
    where gpu_idle_w is null
),

first_series as (
    -- the scrape interval is read off one GPU series per cluster (every series is scraped alike)
    select cluster, min(node || '/' || gpu) as series
    from samples
    where quantity in ('gpu_power_w', 'gpu_energy_counter_j')
    group by cluster
),

steps as (
    select
        s.cluster,
        s.sample_epoch_s - lag(s.sample_epoch_s) over (
            partition by s.cluster, s.quantity order by s.sample_epoch_s
        ) as step_s
    from samples as s
    inner join first_series as f on s.cluster = f.cluster and s.node || '/' || s.gpu = f.series
    where s.quantity in ('gpu_power_w', 'gpu_energy_counter_j')
),

cadence as (
    -- a second scraper's copies are at most half the steps of a series, so its 90th percentile step is a real
    -- scrape interval; samples closer than half of it (and than duplicate_scrape_within_s) are copies. Adapts to
    -- fast samplers (nvidia-smi every 0.1 s) as to 15 s exporters with an HA pair 0.3 s apart.
    select
        cluster,
        least({{ var('duplicate_scrape_within_s') }}, 0.5 * {{ quantile_cont('step_s', 0.9) }}) as duplicate_within_s
    from steps
    where step_s > 0
    group by cluster
),

scrape as (
    select
        s.cluster,
        {{ median('s.step_s') }} as scrape_interval_s,
        any_value(c.duplicate_within_s) as duplicate_within_s
    from steps as s
    inner join cadence as c on s.cluster = c.cluster
    where s.step_s >= c.duplicate_within_s
    group by s.cluster
),

power_at_zero_util as (
    select p.cluster, {{ quantile_cont('p.value', 0.05) }} as p05_w
    from samples as p
    inner join samples as u
        on
            p.cluster = u.cluster and p.node = u.node and p.gpu = u.gpu
            and p.sample_time = u.sample_time and u.quantity = 'gpu_utilization_ratio'
    where
        p.quantity = 'gpu_power_w' and u.value = 0
        and p.cluster in (select n.cluster from needs_idle_estimate as n)
    group by p.cluster
),

power_any as (
    select cluster, {{ quantile_cont('value', 0.05) }} as p05_w
    from samples
    where quantity = 'gpu_power_w' and cluster in (select n.cluster from needs_idle_estimate as n)
    group by cluster
),

request_labels as (
    select
        cluster,
        count(*) as requests,
        count(node) as with_node,
        count(case when node is not null and gpu is not null then 1 end) as with_gpu
    from requests
    group by cluster
),

final as (
    select
        c.cluster,
        {{ partition_day() }} as day,
        cast(coalesce(
            {{ var('window_s') if var('window_s') is not none else 'null' }},
            greatest(1, round(s.scrape_interval_s)),
            15
        ) as double) as window_s,
        s.scrape_interval_s,
        coalesce(c.gpu_idle_w, z.p05_w, a.p05_w, 0) as gpu_idle_w,
        case
            when c.gpu_idle_w is not null then 'clusters.yml'
            when z.p05_w is not null then 'telemetry: 5th percentile of power at zero utilisation'
            when a.p05_w is not null then 'telemetry: 5th percentile of power'
            else 'unknown: no power samples, 0 W assumed'
        end as gpu_idle_source,
        c.host_idle_w,
        c.host_max_w,
        coalesce(c.gpu_max_w, g.max_power_w) as gpu_max_w,
        case
            when c.gpu_max_w is not null then 'clusters.yml'
            when g.hardware is not null then 'factors.gpu_power ' || g.hardware || ': ' || g.source
            else 'none: no factors.gpu_power row'
        end as gpu_max_source,
        coalesce(c.gpu_max_w, g.max_power_w) * {{ var('power_ceiling_margin') }} as gpu_power_ceiling_w,
        c.host_max_w * {{ var('power_ceiling_margin') }} as host_power_ceiling_w,
        -- samples of one series closer than this are one scrape (docs/telemetry-faults.md)
        least(
            {{ var('duplicate_scrape_within_s') }},
            coalesce(s.duplicate_within_s, {{ var('duplicate_scrape_within_s') }}),
            0.5 * coalesce(
                {{ var('window_s') if var('window_s') is not none else 'null' }},
                greatest(1, round(s.scrape_interval_s)),
                15
            )
        ) as duplicate_within_s,
        case
            {% if level_override is not none -%}
                when true then '{{ level_override }}'
            {% endif -%}
            when c.attribution_level <> 'auto' then c.attribution_level
            when r.requests > 0 and r.with_gpu = r.requests then 'gpu'
            when r.requests > 0 and r.with_node = r.requests then 'node'
            else 'cluster'
        end as attribution_level
    from clusters as c
    left join scrape as s on c.cluster = s.cluster
    left join power_at_zero_util as z on c.cluster = z.cluster
    left join power_any as a on c.cluster = a.cluster
    left join request_labels as r on c.cluster = r.cluster
    left join gpu_power_rows as g on c.cluster = g.cluster
)

select * from final
