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
    A quantity in single precision: `direction` 'down' / 'up' rounds it toward -inf / +inf (the low / high end of a
    bound stays a bound, widened by at most 6e-8 relative), none to the nearest (for descriptive quantities).
    Halves the bytes a full-precision double takes when stored; not for quantities that must add up to 1e-9.
-#}
{% macro single_precision(column, direction=none) -%}
    {{ return(adapter.dispatch('single_precision')(column, direction)) }}
{%- endmacro %}

{% macro default__single_precision(column, direction) -%}
    {%- if direction is none -%}
        cast({{ column }} as float)
    {%- elif direction in ('down', 'up') -%}
        case
            when cast(cast({{ column }} as float) as double) {{ '>' if direction == 'down' else '<' }} {{ column }}
                then nextafter(cast({{ column }} as float), cast('{{ '-inf' if direction == 'down' else 'inf' }}' as float))
            else cast({{ column }} as float)
        end
    {%- else -%}
        {{ exceptions.raise_compiler_error("direction must be down, up or none, not " ~ direction) }}
    {%- endif -%}
{%- endmacro %}
