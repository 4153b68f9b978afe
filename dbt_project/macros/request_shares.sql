{#-
    Shares of a request's overlaps with pool-windows (intermediate.int_request_days; METHODOLOGY sections 3 and 5).
-#}

{#- The shares of one overlap o_i,w: `o_s` seconds of a window `length_s` long, at `tokens_per_s`, drawing from the
    request's GPU pool's rates (alias `g`) and its host pool's (`h`); each column named with `prefix`. -#}
{% macro overlap_shares(o_s, length_s, tokens_per_s, g, h, prefix) -%}
    {{ o_s }} as {{ prefix }}overlap_s,
    -- concurrency the request saw: requests running in its GPU pool during the window, weighted by its time
    {{ o_s }} * coalesce({{ g }}.request_seconds, {{ o_s }}) / {{ length_s }} as {{ prefix }}concurrency_seconds,
    -- (a fallback pool's rate covers the part of the time its members with telemetry took)
    {{ o_s }} * coalesce({{ g }}.covered_share, 0) as {{ prefix }}telemetry_covered_s,
    {{ o_s }} * coalesce({{ g }}.idle_per_s, 0) as {{ prefix }}gpu_idle_j,
    {{ o_s }} * coalesce({{ tokens_per_s }} * {{ g }}.dynamic_per_token_s, {{ g }}.dynamic_per_s, 0)
        as {{ prefix }}gpu_dynamic_j,
    {{ o_s }} * coalesce({{ h }}.idle_per_s, 0) as {{ prefix }}host_idle_j,
    {{ o_s }} * coalesce({{ tokens_per_s }} * {{ h }}.dynamic_per_token_s, {{ h }}.dynamic_per_s, 0)
        as {{ prefix }}host_dynamic_j,
    {%- for share, rate in [
        ('embodied_g', 'embodied_per_s'), ('embodied_low_g', 'embodied_low_per_s'),
        ('embodied_high_g', 'embodied_high_per_s'), ('water_l', 'water_per_s'), ('water_low_l', 'water_low_per_s'),
        ('water_high_l', 'water_high_per_s')] %}
    {{ o_s }} * (coalesce({{ g }}.{{ rate }}, 0) + coalesce({{ h }}.{{ rate }}, 0)) as {{ prefix }}{{ share }},
    {%- endfor %}
    -- one zone and hour per cluster-window: the GPU and host pools share it
    {%- for factor in ['ci', 'ci_low', 'ci_high', 'ci_market', 'annual_factor'] %}
    coalesce({{ g }}.{{ factor }}, {{ h }}.{{ factor }}) as {{ prefix }}{{ factor }},
    {%- endfor %}
    -- the single-request rule (checked downstream): how many requests shared the pool-windows, and their
    -- whole dynamic energy
    greatest(coalesce({{ g }}.requests, 0), coalesce({{ h }}.requests, 0)) as {{ prefix }}pool_requests,
    coalesce({{ g }}.dynamic_energy_j, 0) + coalesce({{ h }}.dynamic_energy_j, 0) as {{ prefix }}pool_dynamic_energy_j
{%- endmacro %}

{#- the IT energy of one overlap's shares -#}
{% macro share_energy(prefix) -%}
    {{ prefix }}gpu_idle_j + {{ prefix }}gpu_dynamic_j + {{ prefix }}host_idle_j + {{ prefix }}host_dynamic_j
{%- endmacro %}

{#- o_i,w of a request and the window `w` (an expression) of the day, clipped to its time in the day -#}
{% macro window_overlap(w) -%}
    least(t1_s, {{ partition_day_epoch_s() }} + ({{ w }} + 1) * window_s)
    - greatest(t0_s, {{ partition_day_epoch_s() }} + ({{ w }}) * window_s)
{%- endmacro %}
