{#-
    The day-partitioned models on Spark (the DuckDB version, partition.sql, says what the materialization is for):
    a Parquet table partitioned by the partition column, and each run overwrites the day's partition with a
    static-partition INSERT OVERWRITE (and the `partition_days_back` days before it, one statement each), so
    re-running a day that has no rows any more still empties its partition. The first run, or --full-refresh,
    creates the table from the query (CTAS; Spark puts the partition column last), after checking the model's
    contract; the contract's not_null constraints are not enforced by Parquet (the row_invariants tests check
    them). A model whose columns no longer match the table's fails, as on DuckDB.
-#}
{% materialization partition, adapter='spark' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set meta = config.get('meta') or {} -%}

    {{ run_hooks(pre_hooks) }}

    {%- if existing_relation is none or should_full_refresh() or existing_relation.is_view %}
        {%- set contract_config = config.get('contract') -%}
        {%- if contract_config and contract_config.enforced -%}
            {%- do get_assert_columns_equivalent(compiled_code) -%}
        {%- endif %}
    {%- endif %}
    {%- do spark_write_day_partitions(
        existing_relation, target_relation, compiled_code, meta.get('partition_column', 'day'),
        meta.get('partition_days_back', 0) | int, 'main') %}

    {{ run_hooks(post_hooks) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#-
    Write the rows of `sql` into the Parquet table `target_relation` partitioned by `column`: created from the query
    when `existing_relation` is none, a view, or --full-refresh; else, once its columns are checked against the
    query's, the partition of the day (and of the `days_back` days before it) overwritten, one static-partition
    INSERT OVERWRITE each. The last statement is named `last_statement` (a materialization's 'main').
-#}
{% macro spark_write_day_partitions(existing_relation, target_relation, sql, column, days_back, last_statement) %}
    {%- set rebuild = existing_relation is none or should_full_refresh() or existing_relation.is_view -%}
    {%- if rebuild %}
        {%- if existing_relation is not none %}
            {% do adapter.drop_relation(existing_relation) %}
        {%- endif %}
        {% call statement(last_statement) -%}
            create table {{ target_relation }}
            using parquet
            partitioned by ({{ adapter.quote(column) }})
            as
            {{ sql }}
        {%- endcall %}
    {%- else %}
        {%- do check_partition_schema(existing_relation, sql) %}
        {%- set columns = [] -%}
        {%- for c in adapter.get_columns_in_relation(existing_relation) if c.name | lower != column | lower -%}
            {%- do columns.append(adapter.quote(c.name)) -%}
        {%- endfor -%}
        {%- for back in range(days_back, -1, -1) %}
            {%- set day = partition_day() ~ (' - ' ~ back if back else '') -%}
            {%- set day_value = run_query('select cast(' ~ day ~ ' as string)').columns[0].values()[0] -%}
            {% call statement(last_statement if back == 0 else 'overwrite_' ~ back) -%}
                insert overwrite table {{ target_relation }}
                partition ({{ adapter.quote(column) }} = date '{{ day_value }}')
                select {{ columns | join(', ') }}
                from (
                    {{ sql }}
                ) as partition_rows
                where {{ adapter.quote(column) }} = date '{{ day_value }}'
            {%- endcall %}
        {%- endfor %}
    {%- endif %}
{% endmacro %}
