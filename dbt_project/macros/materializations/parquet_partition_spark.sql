{#-
    parquet_partition (parquet_partition.sql: per-day Parquet files behind a view, the derived columns recomputed
    when read) on Spark. A Spark table partitioned by day IS a folder of Parquet files per day, so:

        <schema>.<table>__days   the stored columns, a Parquet table partitioned by the partition column, each
                                 run overwriting the day's partition (spark_write_day_partitions, as `partition`)
        <schema>.<table>         a view over it adding the derived columns (select_with_derived), the same
                                 columns as on DuckDB

    The stored columns are the query's minus the model's derived columns (meta derived_columns), as on DuckDB: the
    per-request table is the biggest one a Spark warehouse holds, and the derived columns would double its bytes.
    What is DuckDB-only stays there: storage.parquet_parts (Spark's catalog lists the partitions), immutable
    versioned files shared with a published copy (`impact publish` is a DuckDB-warehouse operation), retention and
    `impact migrate` (docs/spark.md).
-#}
{% materialization parquet_partition, adapter='spark' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set days_relation = api.Relation.create(
        database=this.database, schema=this.schema, identifier=this.identifier ~ '__days', type='table') -%}
    {%- set existing_days = adapter.get_relation(
        database=this.database, schema=this.schema, identifier=this.identifier ~ '__days') -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set column = meta.get('partition_column', 'day') -%}
    {%- set levels = context[meta['derived_columns']]() if meta.get('derived_columns') else [] -%}
    {%- set derived = derived_column_names(levels) -%}

    {%- if existing_relation is not none and not existing_relation.is_view %}
        {%- if should_full_refresh() %}
            {% do adapter.drop_relation(existing_relation) %}
        {%- else %}
            {{ exceptions.raise_compiler_error(
                this ~ " is a table built by an earlier version; it is now a view over " ~ days_relation
                ~ ". Rebuild it with `dbt run --full-refresh -s " ~ this.identifier ~ "` (or drop the Spark "
                ~ "database) and re-run the days (docs/spark.md).") }}
        {%- endif %}
    {%- endif %}
    {%- if config.get('contract').enforced %}
        {%- do get_assert_columns_equivalent(compiled_code) %}
    {%- endif %}

    {{ run_hooks(pre_hooks) }}

    {#- the query's columns, in order: the stored ones are written, the derived ones recomputed by the view -#}
    {%- set stored = [] -%}
    {%- for row in run_query(describe_query(compiled_code)).rows
            if row[0] and not row[0].startswith('#') and row[0] | lower not in derived -%}
        {%- do stored.append(adapter.quote(row[0])) -%}
    {%- endfor -%}
    {%- set stored_sql -%}
        select {{ stored | join(', ') }}
        from (
            {{ compiled_code }}
        ) as model_rows
    {%- endset -%}
    {%- do spark_write_day_partitions(
        existing_days, days_relation, stored_sql, column, meta.get('partition_days_back', 0) | int, 'write_days') %}

    {% call statement('main') -%}
        create or replace view {{ target_relation }} as
        {{ select_with_derived(days_relation, levels) }}
    {%- endcall %}

    {{ run_hooks(post_hooks) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
