{#-
    Stored and derived columns of a model (macros/materializations/parquet_partition.sql).

    A model stores the columns that carry information and derives the rest when read: a total from its parts, a sum
    of parts, a factor times an energy. `levels` lists the derived columns: a list of levels, each a list of
    [name, expression]; an expression may use the stored columns and the columns of earlier levels.
-#}

{#- `select *` from `relation` (a relation name or a parenthesised query), with each level of derived columns
    added on top of the previous one. -#}
{% macro select_with_derived(relation, levels) -%}
    {%- set ns = namespace(sql='select * from ' ~ relation) -%}
    {%- for level in levels -%}
        {%- set columns = [] -%}
        {%- for name, expression in level -%}
            {%- do columns.append(expression ~ ' as ' ~ name) -%}
        {%- endfor -%}
        {%- set ns.sql = 'select\n    *,\n    ' ~ columns | join(',\n    ') ~ '\nfrom (\n'
            ~ ns.sql | indent(4, first=true) ~ '\n) as derived_' ~ loop.index -%}
    {%- endfor -%}
    {{ ns.sql }}
{%- endmacro %}

{#- The names of the derived columns, lower-case. -#}
{% macro derived_column_names(levels) -%}
    {%- set names = [] -%}
    {%- for level in levels -%}
        {%- for name, expression in level -%}
            {%- do names.append(name | lower) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{#-
    A column as stored, by its `stored_as` setting: 'float' (single precision, for descriptive quantities),
    'float_down' / 'float_up' (single precision rounded down / up: for the low / high end of a bound, which then
    stays a bound, widened by at most 6e-8 relative), or none (as computed).
-#}
{% macro stored_value(column, stored_as) -%}
    {{ return(adapter.dispatch('stored_value')(column, stored_as)) }}
{%- endmacro %}

{% macro default__stored_value(column, stored_as) -%}
    {%- if stored_as == 'float' -%}
        cast({{ column }} as float)
    {%- elif stored_as in ('float_down', 'float_up') -%}
        {%- set towards = "'-inf'" if stored_as == 'float_down' else "'inf'" -%}
        {%- set beyond = '>' if stored_as == 'float_down' else '<' -%}
        case
            when cast(cast({{ column }} as float) as double) {{ beyond }} {{ column }}
                then nextafter(cast({{ column }} as float), cast({{ towards }} as float))
            else cast({{ column }} as float)
        end
    {%- elif stored_as is none -%}
        {{ column }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("stored_as must be float, float_down or float_up, not " ~ stored_as) }}
    {%- endif -%}
{%- endmacro %}
