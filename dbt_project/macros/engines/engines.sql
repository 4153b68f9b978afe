{#-
    Engine-specific SQL (docs/spark.md, "Porting SQL"): every expression that DuckDB and Spark SQL spell differently
    is one macro here, dispatched on the adapter (duckdb__ emits exactly the DuckDB expression the models used
    before, spark__ the Spark SQL one, valid on Spark 3.5 and 4.x; default__ fails with a clear message). Models call
    these macros instead of the engine's function; tests/test_engine_sql.py fails on a model that uses a
    DuckDB-only construct directly.
-#}

{% macro engine_unsupported(name) -%}
    {{ exceptions.raise_compiler_error(
        "macro " ~ name ~ " has no implementation for the '" ~ adapter.type() ~ "' adapter: the models run on "
        ~ "duckdb and spark (dbt_project/macros/engines/engines.sql)") }}
{%- endmacro %}

{#- Epoch microseconds (bigint) of a timestamp. -#}
{% macro epoch_us(column) -%}{{ adapter.dispatch('epoch_us')(column) }}{%- endmacro %}
{% macro default__epoch_us(column) -%}{{ engine_unsupported('epoch_us') }}{%- endmacro %}
{% macro duckdb__epoch_us(column) -%}epoch_us({{ column }}){%- endmacro %}
{% macro spark__epoch_us(column) -%}unix_micros({{ column }}){%- endmacro %}

{#- One row per integer of [lo, hi] (in a select list: the row is repeated, one value each). -#}
{% macro explode_range(lo, hi) -%}{{ adapter.dispatch('explode_range')(lo, hi) }}{%- endmacro %}
{% macro default__explode_range(lo, hi) -%}{{ engine_unsupported('explode_range') }}{%- endmacro %}
{% macro duckdb__explode_range(lo, hi) -%}unnest(generate_series({{ lo }}, {{ hi }})){%- endmacro %}
{#- (Spark's sequence() fails on an empty range; DuckDB's generate_series returns none: explode(null) neither) -#}
{% macro spark__explode_range(lo, hi) -%}
    explode(case when {{ lo }} <= {{ hi }} then sequence({{ lo }}, {{ hi }}) end)
{%- endmacro %}

{#- One row per month start of [first, last] (dates; in a select list). -#}
{% macro explode_months(first, last) -%}{{ adapter.dispatch('explode_months')(first, last) }}{%- endmacro %}
{% macro default__explode_months(first, last) -%}{{ engine_unsupported('explode_months') }}{%- endmacro %}
{% macro duckdb__explode_months(first, last) -%}
    unnest(generate_series({{ first }}, {{ last }}, interval 1 month))
{%- endmacro %}
{% macro spark__explode_months(first, last) -%}
    explode(case when {{ first }} <= {{ last }} then sequence({{ first }}, {{ last }}, interval 1 month) end)
{%- endmacro %}

{#- The 24 hours of a day as a relation with one integer column `range` (0-23). -#}
{% macro day_hours() -%}{{ adapter.dispatch('day_hours')() }}{%- endmacro %}
{% macro default__day_hours() -%}{{ engine_unsupported('day_hours') }}{%- endmacro %}
{% macro duckdb__day_hours() -%}range(24){%- endmacro %}
{% macro spark__day_hours() -%}(select explode(sequence(0, 23)) as range){%- endmacro %}

{#- CTE hints: DuckDB's `not materialized` / `materialized`; Spark plans CTEs itself (nothing). -#}
{% macro not_materialized() -%}{{ adapter.dispatch('not_materialized')() }}{%- endmacro %}
{% macro default__not_materialized() -%}{{ engine_unsupported('not_materialized') }}{%- endmacro %}
{% macro duckdb__not_materialized() -%}not materialized{%- endmacro %}
{% macro spark__not_materialized() -%}{%- endmacro %}

{% macro materialized() -%}{{ adapter.dispatch('materialized')() }}{%- endmacro %}
{% macro default__materialized() -%}{{ engine_unsupported('materialized') }}{%- endmacro %}
{% macro duckdb__materialized() -%}materialized{%- endmacro %}
{% macro spark__materialized() -%}{%- endmacro %}

{#- A timestamp as 'YYYY-MM-DDTHH:MM:SSZ' text. -#}
{% macro format_utc_timestamp(column) -%}{{ adapter.dispatch('format_utc_timestamp')(column) }}{%- endmacro %}
{% macro default__format_utc_timestamp(column) -%}{{ engine_unsupported('format_utc_timestamp') }}{%- endmacro %}
{% macro duckdb__format_utc_timestamp(column) -%}strftime({{ column }}, '%Y-%m-%dT%H:%M:%SZ'){%- endmacro %}
{% macro spark__format_utc_timestamp(column) -%}
    date_format({{ column }}, "yyyy-MM-dd'T'HH:mm:ss'Z'")
{%- endmacro %}

{#-
    The first row of each partition: {% call first_row_per('a.key', 'a.rank desc') %} select ... {% endcall %}.
    DuckDB: the select with `qualify row_number() over (...) = 1`. Spark (no QUALIFY before 4.x's previews, and
    not on 3.5): the select with the row number as one more column, `_first_row_number`, filtered around it.
-#}
{% macro first_row_per(partition_by, order_by) -%}
    {{ adapter.dispatch('first_row_per')(partition_by, order_by, caller()) }}
{%- endmacro %}
{% macro default__first_row_per(partition_by, order_by, select) -%}{{ engine_unsupported('first_row_per') }}{%- endmacro %}
{% macro duckdb__first_row_per(partition_by, order_by, select) -%}
    {{ select | trim }}
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}
{% macro spark__first_row_per(partition_by, order_by, select) -%}
    {%- set body = select | trim -%}
    {%- if not body.lower().startswith('select') -%}
        {{ exceptions.raise_compiler_error("first_row_per wraps a query that starts with select, not: " ~ body[:40]) }}
    {%- endif -%}
    select * from (
        select
            row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as _first_row_number,
            {{ body[6:] }}
    ) as first_rows
    where _first_row_number = 1
{%- endmacro %}

{#- Exact quantiles with linear interpolation (DuckDB's median / quantile_cont; Spark's exact percentile). -#}
{% macro median(column) -%}{{ adapter.dispatch('median')(column) }}{%- endmacro %}
{% macro default__median(column) -%}{{ engine_unsupported('median') }}{%- endmacro %}
{% macro duckdb__median(column) -%}median({{ column }}){%- endmacro %}
{% macro spark__median(column) -%}percentile({{ column }}, 0.5){%- endmacro %}

{% macro quantile_cont(column, q) -%}{{ adapter.dispatch('quantile_cont')(column, q) }}{%- endmacro %}
{% macro default__quantile_cont(column, q) -%}{{ engine_unsupported('quantile_cont') }}{%- endmacro %}
{% macro duckdb__quantile_cont(column, q) -%}quantile_cont({{ column }}, {{ q }}){%- endmacro %}
{% macro spark__quantile_cont(column, q) -%}percentile({{ column }}, {{ q }}){%- endmacro %}

{#- Replace every match of a (Java/RE2-compatible) regular expression. -#}
{% macro regexp_replace_all(text, pattern, replacement) -%}
    {{ adapter.dispatch('regexp_replace_all')(text, pattern, replacement) }}
{%- endmacro %}
{% macro default__regexp_replace_all(text, pattern, replacement) -%}
    {{ engine_unsupported('regexp_replace_all') }}
{%- endmacro %}
{% macro duckdb__regexp_replace_all(text, pattern, replacement) -%}
    regexp_replace({{ text }}, {{ pattern }}, {{ replacement }}, 'g')
{%- endmacro %}
{% macro spark__regexp_replace_all(text, pattern, replacement) -%}
    regexp_replace({{ text }}, {{ pattern }}, {{ replacement }})
{%- endmacro %}

{% macro starts_with(text, prefix) -%}{{ adapter.dispatch('starts_with')(text, prefix) }}{%- endmacro %}
{% macro default__starts_with(text, prefix) -%}{{ engine_unsupported('starts_with') }}{%- endmacro %}
{% macro duckdb__starts_with(text, prefix) -%}starts_with({{ text }}, {{ prefix }}){%- endmacro %}
{% macro spark__starts_with(text, prefix) -%}startswith({{ text }}, {{ prefix }}){%- endmacro %}

{#- Timestamp arithmetic: a timestamp plus an integer number of microseconds / hours. -#}
{% macro add_microseconds(ts, n) -%}{{ adapter.dispatch('add_microseconds')(ts, n) }}{%- endmacro %}
{% macro default__add_microseconds(ts, n) -%}{{ engine_unsupported('add_microseconds') }}{%- endmacro %}
{% macro duckdb__add_microseconds(ts, n) -%}{{ ts }} + to_microseconds({{ n }}){%- endmacro %}
{% macro spark__add_microseconds(ts, n) -%}timestampadd(microsecond, {{ n }}, {{ ts }}){%- endmacro %}

{% macro add_hours(ts, n) -%}{{ adapter.dispatch('add_hours')(ts, n) }}{%- endmacro %}
{% macro default__add_hours(ts, n) -%}{{ engine_unsupported('add_hours') }}{%- endmacro %}
{% macro duckdb__add_hours(ts, n) -%}{{ ts }} + to_hours({{ n }}){%- endmacro %}
{% macro spark__add_hours(ts, n) -%}timestampadd(hour, {{ n }}, {{ ts }}){%- endmacro %}

{#- Whole days from date `a` to date `b` (b - a; DuckDB's date_diff('day', a, b); Spark's datediff(b, a)). -#}
{% macro days_between(a, b) -%}{{ adapter.dispatch('days_between')(a, b) }}{%- endmacro %}
{% macro default__days_between(a, b) -%}{{ engine_unsupported('days_between') }}{%- endmacro %}
{% macro duckdb__days_between(a, b) -%}date_diff('day', {{ a }}, {{ b }}){%- endmacro %}
{% macro spark__days_between(a, b) -%}datediff({{ b }}, {{ a }}){%- endmacro %}

{#- Month boundaries crossed from `a` to `b` (DuckDB's datediff('month', a, b)). -#}
{% macro months_between(a, b) -%}{{ adapter.dispatch('months_between')(a, b) }}{%- endmacro %}
{% macro default__months_between(a, b) -%}{{ engine_unsupported('months_between') }}{%- endmacro %}
{% macro duckdb__months_between(a, b) -%}datediff('month', {{ a }}, {{ b }}){%- endmacro %}
{% macro spark__months_between(a, b) -%}
    ((year({{ b }}) * 12 + month({{ b }})) - (year({{ a }}) * 12 + month({{ a }})))
{%- endmacro %}

{#- Integer division of integers (DuckDB `//`, Spark `div`). -#}
{% macro int_div(a, b) -%}{{ adapter.dispatch('int_div')(a, b) }}{%- endmacro %}
{% macro default__int_div(a, b) -%}{{ engine_unsupported('int_div') }}{%- endmacro %}
{% macro duckdb__int_div(a, b) -%}{{ a }} // {{ b }}{%- endmacro %}
{% macro spark__int_div(a, b) -%}{{ a }} div {{ b }}{%- endmacro %}

{#- The timestamp (UTC, without time zone) of epoch seconds. -#}
{% macro timestamp_from_epoch_s(seconds) -%}{{ adapter.dispatch('timestamp_from_epoch_s')(seconds) }}{%- endmacro %}
{% macro default__timestamp_from_epoch_s(seconds) -%}{{ engine_unsupported('timestamp_from_epoch_s') }}{%- endmacro %}
{% macro duckdb__timestamp_from_epoch_s(seconds) -%}cast(to_timestamp({{ seconds }}) as timestamp){%- endmacro %}
{% macro spark__timestamp_from_epoch_s(seconds) -%}timestamp_seconds({{ seconds }}){%- endmacro %}

{#- The text type in casts (Spark's varchar needs a length). -#}
{% macro type_string() -%}{{ adapter.dispatch('type_string_')() }}{%- endmacro %}
{% macro default__type_string_() -%}{{ engine_unsupported('type_string') }}{%- endmacro %}
{% macro duckdb__type_string_() -%}varchar{%- endmacro %}
{% macro spark__type_string_() -%}string{%- endmacro %}

{#-
    intermediate.int_model_training_rates' recurrence over the months of each factor model (see the model's
    header): rows factor_model, k, served_before, amortised_before, previous_inferences for k = 0 .. last_k, from
    `months` (factor_model, k, inferences, last_k) and `factor_models` (the footprints and service months).
    DuckDB: a recursive CTE. Spark (no recursive CTE before 4.1): the same recurrence as a fold over the earlier
    months (aggregate() over collect_list), with the same floating-point operations in the same order.
-#}
{% macro amortisation_chain(months, factor_models) -%}
    {{ adapter.dispatch('amortisation_chain')(months, factor_models) }}
{%- endmacro %}
{% macro default__amortisation_chain(months, factor_models) -%}{{ engine_unsupported('amortisation_chain') }}{%- endmacro %}
{% macro duckdb__amortisation_chain(months, factor_models) -%}
    with recursive steps (factor_model, k, served_before, amortised_before, previous_inferences) as (
        select factor_model, 0, cast(0.0 as double), cast(0.0 as double), cast(null as double)
        from {{ months }}
        where k = 0
        union all
        select
            s.factor_model,
            s.k + 1,
            s.served_before + m.inferences,
            s.amortised_before + m.inferences * (
                case
                    when {{ remaining_inferences('f', 's.previous_inferences', 's.k', 's.served_before') }} > 0
                        then
                            greatest(1 - s.amortised_before, 0)
                            / {{ remaining_inferences('f', 's.previous_inferences', 's.k', 's.served_before') }}
                    else 0
                end
            ),
            m.inferences
        from steps as s
        inner join {{ months }} as m on s.factor_model = m.factor_model and s.k = m.k
        inner join {{ factor_models }} as f on s.factor_model = f.factor_model
        where s.k < m.last_k
    )

    select * from steps
{%- endmacro %}
{% macro spark__amortisation_chain(months, factor_models) -%}
    select
        factor_model,
        k,
        served_before,
        aggregate(
            collect_list(named_struct('v', inferences, 'p', remaining)) over (
                partition by factor_model order by k rows between unbounded preceding and 1 preceding
            ),
            cast(0.0 as double),
            (a, x) -> a + x.v * (case when x.p > 0 then greatest(1 - a, 0) / x.p else 0 end)
        ) as amortised_before,
        previous_inferences
    from (
        select
            s.*,
            {{ remaining_inferences('f', 's.previous_inferences', 's.k', 's.served_before') }} as remaining
        from (
            select
                factor_model,
                k,
                inferences,
                cast(coalesce(sum(inferences) over (
                    partition by factor_model order by k rows between unbounded preceding and 1 preceding
                ), 0) as double) as served_before,
                cast(lag(inferences) over (partition by factor_model order by k) as double) as previous_inferences
            from {{ months }}
        ) as s
        inner join {{ factor_models }} as f on s.factor_model = f.factor_model
    ) as rated
{%- endmacro %}

{#- Contracts name text columns `varchar` (DuckDB's name); on Spark that type needs a length: cast to string. -#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ spark_type(type) }})
{%- endmacro %}

{#- A contract's type on Spark: varchar is string, a DuckDB list `t[]` is array<t>. -#}
{% macro spark_type(type) -%}
    {%- set t = type | lower | trim -%}
    {%- if t.endswith('[]') -%}
        array<{{ spark_type(t[:-2]) }}>
    {%- elif t == 'varchar' -%}
        string
    {%- else -%}
        {{ type }}
    {%- endif -%}
{%- endmacro %}

{#- The column names and types a query returns, without running it (the partition materialization's check). -#}
{% macro describe_query(sql) -%}{{ adapter.dispatch('describe_query')(sql) }}{%- endmacro %}
{% macro default__describe_query(sql) -%}{{ engine_unsupported('describe_query') }}{%- endmacro %}
{% macro duckdb__describe_query(sql) -%}describe {{ sql }}{%- endmacro %}
{% macro spark__describe_query(sql) -%}describe query {{ sql }}{%- endmacro %}

{#- ---------------------------------------------------------------- lists and JSON (image requests, identity) -#}

{#- One row per element of a list (in a select list: the row is repeated, one element each; none for a null or
    empty list). -#}
{% macro explode_list(list) -%}{{ adapter.dispatch('explode_list')(list) }}{%- endmacro %}
{% macro default__explode_list(list) -%}{{ engine_unsupported('explode_list') }}{%- endmacro %}
{% macro duckdb__explode_list(list) -%}unnest({{ list }}){%- endmacro %}
{% macro spark__explode_list(list) -%}explode({{ list }}){%- endmacro %}

{#- A list of the expressions `items` (a Jinja list of SQL expressions). -#}
{% macro list_of(items) -%}{{ adapter.dispatch('list_of')(items) }}{%- endmacro %}
{% macro default__list_of(items) -%}{{ engine_unsupported('list_of') }}{%- endmacro %}
{% macro duckdb__list_of(items) -%}[{{ items | join(', ') }}]{%- endmacro %}
{% macro spark__list_of(items) -%}array({{ items | join(', ') }}){%- endmacro %}

{#- The elements of a list as text, separated by `separator` (null elements left out). -#}
{% macro list_join(list, separator) -%}{{ adapter.dispatch('list_join')(list, separator) }}{%- endmacro %}
{% macro default__list_join(list, separator) -%}{{ engine_unsupported('list_join') }}{%- endmacro %}
{% macro duckdb__list_join(list, separator) -%}array_to_string({{ list }}, {{ separator }}){%- endmacro %}
{% macro spark__list_join(list, separator) -%}array_join({{ list }}, {{ separator }}){%- endmacro %}

{#- The number of elements of a list; null for a null list (Spark's size() gives -1 there: array_size does not). -#}
{% macro list_length(list) -%}{{ adapter.dispatch('list_length')(list) }}{%- endmacro %}
{% macro default__list_length(list) -%}{{ engine_unsupported('list_length') }}{%- endmacro %}
{% macro duckdb__list_length(list) -%}len({{ list }}){%- endmacro %}
{% macro spark__list_length(list) -%}array_size({{ list }}){%- endmacro %}

{#- Aggregate: the sorted list of `value` over the rows where `condition` holds; null when no row does. -#}
{% macro sorted_list_agg(value, condition) -%}
    {{ adapter.dispatch('sorted_list_agg')(value, condition) }}
{%- endmacro %}
{% macro default__sorted_list_agg(value, condition) -%}{{ engine_unsupported('sorted_list_agg') }}{%- endmacro %}
{% macro duckdb__sorted_list_agg(value, condition) -%}
    list({{ value }} order by {{ value }}) filter (where {{ condition }})
{%- endmacro %}
{#- (collect_list gives [] over no row where DuckDB's list gives null) -#}
{% macro spark__sorted_list_agg(value, condition) -%}
    case
        when count(case when {{ condition }} then 1 end) > 0
            then array_sort(collect_list(case when {{ condition }} then {{ value }} end))
    end
{%- endmacro %}

{#- A JSON object (text) of the (key, expression) pairs `fields`, null values written as null. -#}
{% macro json_object(fields) -%}{{ adapter.dispatch('json_object')(fields) }}{%- endmacro %}
{% macro default__json_object(fields) -%}{{ engine_unsupported('json_object') }}{%- endmacro %}
{% macro duckdb__json_object(fields) -%}
    cast(to_json(struct_pack(
        {%- for key, value in fields %}
        {{ key }} := {{ value }}{{ ',' if not loop.last }}
        {%- endfor %}
    )) as varchar)
{%- endmacro %}
{#- (Spark's to_json leaves null fields out unless told; its text is DuckDB's: no spaces, fields in order) -#}
{% macro spark__json_object(fields) -%}
    to_json(named_struct(
        {%- for key, value in fields %}
        '{{ key }}', {{ value }}{{ ',' if not loop.last }}
        {%- endfor %}
    ), map('ignoreNullFields', 'false'))
{%- endmacro %}

{#- The text of a JSON object's field `key` (null when absent or null). -#}
{% macro json_field_text(json, key) -%}{{ adapter.dispatch('json_field_text')(json, key) }}{%- endmacro %}
{% macro default__json_field_text(json, key) -%}{{ engine_unsupported('json_field_text') }}{%- endmacro %}
{% macro duckdb__json_field_text(json, key) -%}{{ json }} ->> '{{ key }}'{%- endmacro %}
{% macro spark__json_field_text(json, key) -%}get_json_object({{ json }}, '$.{{ key }}'){%- endmacro %}

{#- A JSON object's field `key` holding a list of strings, as a list (null when absent or null). -#}
{% macro json_field_text_list(json, key) -%}
    {{ adapter.dispatch('json_field_text_list')(json, key) }}
{%- endmacro %}
{% macro default__json_field_text_list(json, key) -%}{{ engine_unsupported('json_field_text_list') }}{%- endmacro %}
{% macro duckdb__json_field_text_list(json, key) -%}cast({{ json }} -> '{{ key }}' as varchar[]){%- endmacro %}
{% macro spark__json_field_text_list(json, key) -%}
    from_json(get_json_object({{ json }}, '$.{{ key }}'), 'array<string>')
{%- endmacro %}

{#-
    single_precision (macros/stored_columns.sql) on Spark, which has no nextafter(): the float next to f = cast(x
    as float) toward -inf ('down') or +inf ('up') when f lies on the wrong side of x, from f's exponent e
    (2^e <= |f| < 2^(e+1), log2 corrected where it rounds) and the spacing 2^(e-23) of normal floats, halved below
    a power of two on the way to zero: the same float as DuckDB's nextafter for every normal float.
-#}
{% macro spark__single_precision(column, direction) -%}
    {%- if direction is none -%}
        cast({{ column }} as float)
    {%- elif direction in ('down', 'up') -%}
        {%- set f = 'cast(cast(' ~ column ~ ' as float) as double)' -%}
        {%- set e0 = 'floor(log2(abs(' ~ f ~ ')))' -%}
        {%- set e -%}
            ({{ e0 }} - case when pow(2, {{ e0 }}) > abs({{ f }}) then 1 else 0 end
                + case when pow(2, {{ e0 }} + 1) <= abs({{ f }}) then 1 else 0 end)
        {%- endset -%}
        {%- set ulp = 'pow(2, ' ~ e ~ ' - 23)' -%}
        {#- toward zero from a power of two the spacing is half -#}
        {%- set inward = 'case when abs(' ~ f ~ ') = pow(2, ' ~ e ~ ') then ' ~ ulp ~ ' / 2 else ' ~ ulp ~ ' end' -%}
        case
            when {{ f }} {{ '>' if direction == 'down' else '<' }} {{ column }}
                then cast(
                    case
                        when {{ f }} = 0 then {{ '-' if direction == 'down' else '' }}pow(2, -149)
                        {%- if direction == 'down' %}
                        when {{ f }} > 0 then {{ f }} - {{ inward }}
                        else {{ f }} - {{ ulp }}
                        {%- else %}
                        when {{ f }} < 0 then {{ f }} + {{ inward }}
                        else {{ f }} + {{ ulp }}
                        {%- endif %}
                    end as float)
            else cast({{ column }} as float)
        end
    {%- else -%}
        {{ exceptions.raise_compiler_error("direction must be down, up or none, not " ~ direction) }}
    {%- endif -%}
{%- endmacro %}

{#-
    The rows of a query that pass a condition on window functions:
    {% call qualify_rows("max(x) over (...) <= y") %} select ... {% endcall %}. DuckDB: `qualify condition`.
    Spark: the condition as one more column, `_qualified`, filtered around the query (as first_row_per does).
-#}
{% macro qualify_rows(condition) -%}{{ adapter.dispatch('qualify_rows')(condition, caller()) }}{%- endmacro %}
{% macro default__qualify_rows(condition, select) -%}{{ engine_unsupported('qualify_rows') }}{%- endmacro %}
{% macro duckdb__qualify_rows(condition, select) -%}
    {{ select | trim }}
    qualify {{ condition | trim }}
{%- endmacro %}
{% macro spark__qualify_rows(condition, select) -%}
    {%- set body = select | trim -%}
    {%- if not body.lower().startswith('select') -%}
        {{ exceptions.raise_compiler_error("qualify_rows wraps a query that starts with select, not: " ~ body[:40]) }}
    {%- endif -%}
    select * from (
        select
            {{ condition | trim }} as _qualified,
            {{ body[6:] }}
    ) as qualified_rows
    where _qualified
{%- endmacro %}

{#-
    A number rounded to `digits` decimals, as it reads when concatenated to text (reasons): DuckDB's shortest
    text of the double (15.0, 1234.5, 26000000.5). Spark would write 2.60000005E7 from 1e7 on: the decimal's text
    without its trailing zeros (one kept after the point) instead.
-#}
{% macro rounded_text(value, digits) -%}{{ adapter.dispatch('rounded_text')(value, digits) }}{%- endmacro %}
{% macro default__rounded_text(value, digits) -%}{{ engine_unsupported('rounded_text') }}{%- endmacro %}
{% macro duckdb__rounded_text(value, digits) -%}round({{ value }}, {{ digits }}){%- endmacro %}
{% macro spark__rounded_text(value, digits) -%}
    {%- if digits | int == 0 -%}
    cast(cast(round({{ value }}, 0) as decimal(38, 0)) as string) || '.0'
    {%- else -%}
    {#- (DuckDB writes -0.0 for a negative value that rounds to zero, and for -0.0 itself: its sign shows in the
        double's text) -#}
    case when round({{ value }}, {{ digits }}) = 0 and startswith(cast({{ value }} as string), '-') then '-' else '' end
    || regexp_replace(cast(cast(round({{ value }}, {{ digits }}) as decimal(38, {{ digits }})) as string), '(\\.[0-9]*?)0*$', '$1')
    || case when cast(round({{ value }}, {{ digits }}) as decimal(38, {{ digits }}))
        = cast(round({{ value }}, {{ digits }}) as decimal(38, 0)) then '0' else '' end
    {%- endif -%}
{%- endmacro %}

{#- A string literal of `text`: DuckDB doubles a quote inside it ('GPU''s'); Spark reads '' as two literals run
    together ('GPU' 's' is 'GPUs') and escapes it with a backslash instead. -#}
{% macro text_literal(text) -%}{{ adapter.dispatch('text_literal')(text) }}{%- endmacro %}
{% macro default__text_literal(text) -%}{{ engine_unsupported('text_literal') }}{%- endmacro %}
{% macro duckdb__text_literal(text) -%}'{{ text | replace("'", "''") }}'{%- endmacro %}
{% macro spark__text_literal(text) -%}'{{ text | replace("\\", "\\\\") | replace("'", "\\'") }}'{%- endmacro %}
