{#-
    The materialization of the day-partitioned models: a run replaces the partition's rows, in one transaction:
    it deletes the rows of the day being materialised (and of the `partition_days_back` days before it, a model
    meta setting, for roll-ups that a later day can complete) and inserts the new ones straight from the model's
    query. Replacing is the mechanism's job, not each model's, so no day-partitioned model can forget it.
    (dbt's incremental materialization first writes the query's result into a temporary table and then copies it
    into the target: on the per-request and per-sample models, millions of rows, that copy costs as much as the
    insert itself.)
    The first run, or --full-refresh, creates the table from the query with the model's contract. A model whose
    columns (names, order-independent, and types) no longer match the table's fails, like on_schema_change: fail:
    rebuild the warehouse (README, "Upgrading a warehouse").
    Model meta: partition_column (default 'day'), partition_days_back (default 0).
-#}
{% materialization partition, adapter='duckdb' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set rebuild = existing_relation is none or should_full_refresh() or existing_relation.is_view -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if rebuild %}
        {%- if existing_relation is not none %}
            {% do adapter.drop_relation(existing_relation) %}
        {%- endif %}
        {%- set build_sql = create_table_as(False, target_relation, compiled_code) %}
    {%- else %}
        {%- do check_partition_schema(existing_relation, compiled_code) %}
        {%- set meta = config.get('meta') or {} -%}
        {%- set column = meta.get('partition_column', 'day') -%}
        {%- set days_back = meta.get('partition_days_back', 0) | int -%}
        {% call statement('delete_partition') -%}
            delete from {{ target_relation }} where {{ partition_filter(adapter.quote(column), days_back) }}
        {%- endcall %}
        {%- set build_sql -%}
            insert into {{ target_relation }} by name
            select * from (
                {{ compiled_code }}
            )
        {%- endset %}
    {%- endif %}

    {% call statement('main') -%}
        {{ build_sql }}
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.commit() %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- Fails when the query's columns differ from the existing table's (DESCRIBE binds the query, it does not run it;
    partition columns, which Spark lists in a section of their own, are compared once). -#}
{% macro check_partition_schema(relation, sql) %}
    {%- set described = run_query(describe_query(sql)) -%}
    {%- set wanted = {} -%}
    {%- for row in described.rows if row[0] and not row[0].startswith('#') -%}
        {%- do wanted.update({row[0] | lower: row[1] | upper}) -%}
    {%- endfor -%}
    {%- set have = {} -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do have.update({column.name | lower: column.dtype | upper}) -%}
    {%- endfor -%}
    {%- if wanted != have -%}
        {%- set missing = [] -%}
        {%- for name, kind in wanted.items() if have.get(name) != kind -%}
            {%- do missing.append(name ~ ' ' ~ kind ~ ' (table: ' ~ have.get(name, 'absent') ~ ')') -%}
        {%- endfor -%}
        {%- for name in have if name not in wanted -%}
            {%- do missing.append(name ~ ' (only in the table)') -%}
        {%- endfor -%}
        {{ exceptions.raise_compiler_error(
            "The source and target schemas on this incremental model are out of sync: " ~ relation
            ~ " differs from the model in " ~ missing | join(', ')
            ~ ". The warehouse was built by an earlier version: delete it and run again (README, "
            ~ "'Upgrading a warehouse').") }}
    {%- endif -%}
{% endmacro %}
