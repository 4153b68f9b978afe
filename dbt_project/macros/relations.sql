{#-
    ref() and source() name relations as schema.table, without the database. In DuckDB the database of a file is
    its name (warehouse.duckdb -> "warehouse"), and a view keeps the qualified names it was created with: with the
    database in them, every view of a warehouse that was copied or renamed (an audit snapshot, say) fails with
    'Catalog "warehouse" does not exist'. Unqualified, a view resolves its tables in its own database, whatever
    the file is called.
-#}
{% macro ref() %}
    {%- do return(relation_without_database(builtins.ref(*varargs, **kwargs))) -%}
{% endmacro %}

{% macro source() %}
    {%- do return(relation_without_database(builtins.source(*varargs, **kwargs))) -%}
{% endmacro %}

{% macro relation_without_database(relation) %}
    {%- if relation is not none and relation.include is defined -%}
        {%- do return(relation.include(database=False)) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{% endmacro %}
