{#-
    One row per request from intermediate.int_request_days (one row per request and UTC day it ran in): its id,
    the request's `attributes`, days_spanned, day (the UTC day it started), the `summed` per-day columns added up
    over the days materialised, the `maxed` ones' max, and days_materialised. The two request marts are views over
    this query.

    A request inside one day is its one row as it is; only those that ran past midnight are grouped. The table is
    named in each branch, not in an import CTE: a CTE read twice is materialised whole, and a query on the view
    that needs two columns would then read all of them.
-#}
{% macro request_days_by_request(attributes, summed, maxed=[]) %}
    select
        request_id,
        {%- for col in attributes %}
            {{ col }},
        {%- endfor %}
        days_spanned,
        day,
        {%- for col in summed + maxed %}
            {{ col }},
        {%- endfor %}
        cast(1 as bigint) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned = 1
    union all
    select
        request_id,
        {%- for col in attributes %}
            any_value({{ col }}) as {{ col }},
        {%- endfor %}
        any_value(days_spanned) as days_spanned,
        cast(any_value(start_time) as date) as day,
        {%- for col in summed %}
            sum({{ col }}) as {{ col }},
        {%- endfor %}
        {%- for col in maxed %}
            max({{ col }}) as {{ col }},
        {%- endfor %}
        count(*) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned > 1
    group by request_id
{% endmacro %}

{#-
    The columns of intermediate.int_request_days that are derived from its stored columns when read (sums of parts,
    totals, factor x energy products), in levels: an expression uses stored columns and those of earlier levels.
    IT energy is stored (it is what analysts read most); its host dynamic part is derived as what remains of it,
    clipped at 0 (rounding must not make it negative). Training is charged once per request, on the day it started:
    inferences_charged = output tokens + 1 (text) or the images generated (image) on that day, else 0; fine-tuning
    adds the LoRA adapters' rates x the same inferences.
    int_request_days computes them with these expressions, and the table's view (parquet_partition) recomputes
    them from the stored Parquet the same way, so every total is the sum of its parts exactly as read.
-#}
{% macro request_day_derived_columns() %}
    {{ return(adapter.dispatch('request_day_derived_columns')()) }}
{% endmacro %}

{% macro default__request_day_derived_columns() %}
    {{ return([
        [
            ['telemetry_covered_s', 'request_seconds - overlap_without_telemetry_s'],
            ['idle_energy_j', 'accelerator_idle_energy_j + host_idle_energy_j'],
            ['unallocated_idle_energy_j', 'coalesce(request_seconds * unallocated_idle_energy_j_per_s, 0)'],
            ['accelerator_energy_j', 'accelerator_idle_energy_j + accelerator_dynamic_energy_j'],
            ['inferences_charged',
             'case when days_spanned = 1 or cast(start_time as date) = day'
             ~ ' then coalesce(images_generated, coalesce(output_tokens, 0) + 1) else 0 end'],
            ['operational_location_g_co2e', 'pue * it_location_g_co2e + pue * predicted_location_g_co2e'],
            ['operational_location_low_g_co2e',
             'pue_low * it_location_low_g_co2e + pue_low * predicted_location_low_g_co2e'],
            ['operational_location_high_g_co2e',
             'pue_high * it_location_high_g_co2e + pue_high * predicted_location_high_g_co2e'],
            ['operational_market_g_co2e',
             'case when market_factor_energy_j > 0 or predicted_market_g_co2e is not null'
             ~ ' then pue * coalesce(it_market_g_co2e, it_location_g_co2e)'
             ~ ' + pue * coalesce(predicted_market_g_co2e, predicted_location_g_co2e) end'],
            ['facility_energy_j', 'pue * (it_energy_j + it_energy_predicted_j)'],
            ['water_onsite_l', '(it_energy_j + it_energy_predicted_j) * wue_onsite_l_per_kwh / 3.6e6'],
            ['water_onsite_low_l', '(it_energy_j + it_energy_predicted_low_j) * wue_low_l_per_kwh / 3.6e6'],
            ['water_onsite_high_l', '(it_energy_j + it_energy_predicted_high_j) * wue_high_l_per_kwh / 3.6e6'],
            ['water_offsite_l', 'pue * (it_energy_j + it_energy_predicted_j) * ewif_l_per_kwh / 3.6e6'],
            ['water_offsite_low_l',
             'pue_low * (it_energy_j + it_energy_predicted_low_j) * ewif_low_l_per_kwh / 3.6e6'],
            ['water_offsite_high_l',
             'pue_high * (it_energy_j + it_energy_predicted_high_j) * ewif_high_l_per_kwh / 3.6e6'],
        ],
        [
            ['training_g_co2e', 'coalesce(training_g_co2e_per_inference * inferences_charged, 0)'],
            ['fine_tuning_g_co2e',
             'coalesce(fine_tuning_g_co2e_per_inference * inferences_charged, 0)'
             ~ ' + coalesce(adapter_g_co2e_per_inference * inferences_charged, 0)'],
            ['training_water_l',
             'coalesce(training_water_l_per_inference * inferences_charged, 0)'
             ~ ' + coalesce(adapter_water_l_per_inference * inferences_charged, 0)'],
            ['host_dynamic_energy_j',
             'greatest(it_energy_j - idle_energy_j - unallocated_idle_energy_j - accelerator_dynamic_energy_j, 0)'],
        ],
        [
            ['total_g_co2e',
             'operational_location_g_co2e + embodied_g_co2e + training_g_co2e + fine_tuning_g_co2e'],
            ['total_g_co2e_low',
             'operational_location_low_g_co2e + embodied_low_g_co2e + training_g_co2e + fine_tuning_g_co2e'],
            ['total_g_co2e_high',
             'operational_location_high_g_co2e + embodied_high_g_co2e + training_g_co2e + fine_tuning_g_co2e'],
            ['total_water_l', 'water_onsite_l + water_offsite_l + water_embodied_l + training_water_l'],
            ['total_water_l_low',
             'water_onsite_low_l + water_offsite_low_l + water_embodied_low_l + training_water_l'],
            ['total_water_l_high',
             'water_onsite_high_l + water_offsite_high_l + water_embodied_high_l + training_water_l'],
            ['dynamic_energy_j', 'accelerator_dynamic_energy_j + host_dynamic_energy_j'],
            ['host_energy_j', 'host_idle_energy_j + host_dynamic_energy_j'],
        ],
    ]) }}
{% endmacro %}
