{#-
    The key a model name is matched on (factors.model_aliases.alias_key): without an 'org/' prefix, lower-case,
    letters and digits only, so 'meta-llama/Llama-2-70b-chat-hf' -> 'llama270bchathf', 'llama2-70b' -> 'llama270b'.
    Same rule as orchestration.lib.factors.model_key.
-#}
{% macro model_key(column) -%}
    lower({{ regexp_replace_all("regexp_replace(" ~ column ~ ", '^[^/]*/', '')", "'[^A-Za-z0-9]'", "''") }})
{%- endmacro %}

{#-
    Rank of a zone-keyed factor row for a grid zone: the exact zone first, then ever shorter '-'-separated prefixes
    (US-CAL-CISO -> US-CAL -> US), then WORLD; null when the row does not apply to the zone.
-#}
{% macro zone_match_rank(factor_zone, zone) -%}
    case
        when {{ factor_zone }} = {{ zone }} then 0
        when {{ starts_with(zone, factor_zone ~ " || '-'") }} then 1000 - length({{ factor_zone }})
        when upper({{ factor_zone }}) = 'WORLD' then 10000
    end
{%- endmacro %}

{#- Seconds in a year of hardware lifetime (Julian year, as SI/ISO 80000-3 uses). -#}
{% macro seconds_per_year() -%}
    31557600.0
{%- endmacro %}

{#-
    Remaining projected inferences of a factor model at month k of its service (intermediate.int_model_training_rates):
    last month's observed volume x the remaining service months when service_months is known and last month served
    requests, else the projected lifetime inferences not yet served.
-#}
{% macro remaining_inferences(model, previous_inferences, k, served_before) -%}
    case
        when {{ model }}.service_months is not null and {{ previous_inferences }} > 0
            then {{ previous_inferences }} * ({{ model }}.service_months - {{ k }})
        else {{ model }}.projected_lifetime_inferences - {{ served_before }}
    end
{%- endmacro %}

{#- The provenance every factor row carries (origin shipped/user, source, licence, version). -#}
{% macro factor_provenance() -%}
    origin,
    source,
    licence,
    version
{%- endmacro %}

{#- A GPU model name as the gpu_power factors are matched on: lower case, vendor and brand words dropped, spaces and
    underscores as dashes ('NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3', 'Tesla T4' -> 't4'). -#}
{% macro gpu_model_key(column) -%}
    {{ regexp_replace_all(
        "regexp_replace(lower(trim(" ~ column ~ ")), '^((nvidia|tesla|amd|instinct)[ _-]*)+', '')", "'[ _]+'", "'-'"
    ) }}
{%- endmacro %}
