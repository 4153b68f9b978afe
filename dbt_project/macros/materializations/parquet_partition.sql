{#-
    The materialization of the day-partitioned models too big to copy: each materialised day is written once, as
    an immutable Parquet file, and the model's relation is a view over the current file of every day.

        <warehouse>.parts/<schema>.<table>/<dbt invocation id>/day=<day>/data_0.parquet

    storage.parquet_parts (in the warehouse) lists the current file of each day; replacing a day registers its new
    file and rebuilds the view in one transaction, so a reader sees the old day or the new one, never a mix. The
    files are never changed: the analysts' published warehouse (orchestration/lib/operations/publish.py) names
    the same files in its own copy of the view, so publishing costs no copy of the data, and a file that is no
    longer current is deleted only once no published version still names it.

    Model config (meta):
      partition_column, partition_days_back  as for `partition`
      derived_columns  the name of a macro returning the levels of columns the model derives from its
                       stored columns (macros/stored_columns.sql): not stored, recomputed by the view
    The parts folder is the warehouse path + '.parts' (the profile's path): it must not contain '=', which the
    file names use for the day.
-#}
{% materialization parquet_partition, adapter='duckdb' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set column = meta.get('partition_column', 'day') -%}
    {%- set days_back = meta.get('partition_days_back', 0) | int -%}
    {%- set levels = context[meta['derived_columns']]() if meta.get('derived_columns') else [] -%}
    {%- set derived = derived_column_names(levels) -%}
    {%- set name = this.schema ~ '.' ~ this.identifier -%}

    {%- if existing_relation is not none and not existing_relation.is_view %}
        {{ exceptions.raise_compiler_error(
            name ~ " is a table built by an earlier version; it is now stored as one Parquet file per day. "
            ~ "Convert the warehouse once with `impact migrate --warehouse FILE` (docs/operations.md, "
            ~ "'Upgrading a warehouse').") }}
    {%- endif %}
    {%- if config.get('contract').enforced %}
        {#- the query's columns and types against the model's YAML (not-null constraints: its data tests) -#}
        {%- set _ = get_assert_columns_equivalent(compiled_code) %}
    {%- endif %}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {#- the query's columns, in order: the stored ones are written, the derived ones recomputed by the view -#}
    {%- set stored = [] -%}
    {%- for row in run_query('describe ' ~ compiled_code).rows -%}
        {%- if row[0] | lower not in derived -%}
            {%- do stored.append({'name': row[0], 'type': row[1]}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set partition_type = (stored | selectattr('name', 'equalto', column) | first)['type'] -%}
    {%- if existing_relation is not none and not should_full_refresh() %}
        {%- do check_parts_schema(name, stored, column, partition_type) %}
    {%- endif %}

    {%- set table_folder = parquet_parts_root() ~ '/' ~ name -%}
    {%- set version_folder = table_folder ~ '/' ~ invocation_id -%}
    {%- do ensure_folder(parquet_parts_root()) -%}
    {%- do ensure_folder(table_folder) -%}
    {%- if days_back == 0 %}
        {#- one day: written as one file straight away (a partitioned write costs ~10 % more CPU) -#}
        {%- set day = run_query("select strftime(" ~ partition_day() ~ ", '%Y-%m-%d')").columns[0].values()[0] -%}
        {%- set day_folder = version_folder ~ '/' ~ column ~ '=' ~ day -%}
        {%- do ensure_folder(version_folder) -%}
        {%- do ensure_folder(day_folder) -%}
    {%- endif %}
    {#- LZ4: analysts' scans read it ~1.7x faster than zstd, for ~13 % more bytes (benchmarks/storage.md) -#}
    {% call statement('write_parts') -%}
        copy (
            select
                {%- for c in stored if c.name != column %}
                {{ adapter.quote(c.name) }}{{ ',' if days_back > 0 or not loop.last }}
                {%- endfor %}
                {%- if days_back > 0 %}
                {{ adapter.quote(column) }}
                {%- endif %}
            from (
                {{ compiled_code }}
            ) as model_rows
            where {{ partition_filter(adapter.quote(column), days_back) }}
        ) to {{ sql_string(day_folder ~ '/data_0.parquet' if days_back == 0 else version_folder) }} (
            format parquet, compression lz4_raw, parquet_version v2
            {%- if days_back > 0 %}, partition_by ({{ adapter.quote(column) }}){% endif %}
        )
    {%- endcall %}
    {%- set written = run_query('select file from glob(' ~ sql_string(version_folder ~ '/*/*.parquet') ~ ')') -%}

    {% call statement('register_parts') -%}
        create schema if not exists storage;
        create table if not exists storage.parquet_parts (
            relation varchar not null,
            day date not null,
            path varchar not null,
            row_count bigint not null,
            written_at timestamp not null,
            invocation_id varchar not null
        );
        delete from storage.parquet_parts
        where relation = {{ sql_string(name) }}
            {%- if not should_full_refresh() %} and {{ partition_filter('day', days_back) }}{% endif %};
        {%- if written.rows | length > 0 %}
        insert into storage.parquet_parts
        select
            {{ sql_string(name) }},
            cast(regexp_extract(file_name, '/{{ column }}=([0-9-]+)/', 1) as date),
            file_name,
            num_rows,
            cast(now() as timestamp),
            {{ sql_string(invocation_id) }}
        from parquet_file_metadata([
            {%- for row in written.rows %}{{ sql_string(row[0]) }}{{ ', ' if not loop.last }}{% endfor -%}
        ]);
        {%- endif %}
    {%- endcall %}

    {%- set parts = run_query(
        'select path from storage.parquet_parts where relation = ' ~ sql_string(name) ~ ' order by day, path') -%}
    {% call statement('main') -%}
        create or replace view {{ target_relation }} as
        {{ select_with_derived(parquet_parts_relation(stored, column, partition_type, parts.columns[0].values()),
                               levels) }}
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.commit() %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- The stored columns of the day files `paths` (the partition column last, from the file names); with no file yet,
    no rows of the query's columns. orchestration/lib/operations/parts.py rewrites the list of files the same way
    when retention retires days. -#}
{% macro parquet_parts_relation(stored, column, partition_type, paths) -%}
    {%- if paths | length > 0 -%}
        read_parquet(
            [{% for path in paths %}{{ sql_string(path) }}{{ ', ' if not loop.last }}{% endfor %}],
            hive_partitioning = true, hive_types = {'{{ column }}': '{{ partition_type }}'}
        )
    {%- else -%}
        {%- set columns = [] -%}
        {%- for c in stored if c.name != column -%}
            {%- do columns.append('cast(null as ' ~ c.type ~ ') as ' ~ adapter.quote(c.name)) -%}
        {%- endfor -%}
        (select {{ columns | join(', ') }}, cast(null as {{ partition_type }}) as {{ adapter.quote(column) }} where false)
    {%- endif -%}
{%- endmacro %}

{#- Fails when the stored columns (names and types) differ from those of the relation's current day files, like
    on_schema_change: fail. Derived columns are not stored: adding or changing one only rebuilds the view. -#}
{% macro check_parts_schema(name, stored, column, partition_type) %}
    {%- if not adapter.get_relation(database=none, schema='storage', identifier='parquet_parts') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set current = run_query(
        'select path from storage.parquet_parts where relation = ' ~ sql_string(name) ~ ' order by day desc limit 1') -%}
    {%- if current.rows | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set have = {} -%}
    {%- for row in run_query('describe ' ~ parquet_parts_relation(stored, column, partition_type,
                                                                  [current.rows[0][0]])).rows -%}
        {%- do have.update({row[0] | lower: row[1] | upper}) -%}
    {%- endfor -%}
    {%- set wanted = {} -%}
    {%- for c in stored -%}
        {%- do wanted.update({c.name | lower: c.type | upper}) -%}
    {%- endfor -%}
    {%- if wanted != have -%}
        {%- set differences = [] -%}
        {%- for c, kind in wanted.items() if have.get(c) != kind -%}
            {%- do differences.append(c ~ ' ' ~ kind ~ ' (day files: ' ~ have.get(c, 'absent') ~ ')') -%}
        {%- endfor -%}
        {%- for c in have if c not in wanted -%}
            {%- do differences.append(c ~ ' (only in the day files)') -%}
        {%- endfor -%}
        {{ exceptions.raise_compiler_error(
            "The stored columns of " ~ name ~ " differ from those of its day files in " ~ differences | join(', ')
            ~ ". The warehouse was built by an earlier version: convert it with `impact migrate`, or delete it and "
            ~ "run again (docs/operations.md, 'Upgrading a warehouse').") }}
    {%- endif -%}
{% endmacro %}

{#- The folder of the Parquet parts: beside the warehouse file (the profile's path), '<warehouse>.parts'. -#}
{% macro parquet_parts_root() -%}
    {%- set root = target.path ~ '.parts' -%}
    {%- if '=' in root -%}
        {{ exceptions.raise_compiler_error(
            "the warehouse path must not contain '=' (its Parquet parts name their day as day=YYYY-MM-DD): " ~ root) }}
    {%- endif -%}
    {{ return(root) }}
{%- endmacro %}

{#- Create a folder if it does not exist (its parent must): DuckDB creates the target folder of a partitioned
    COPY, and writes no file for no rows. -#}
{% macro ensure_folder(path) -%}
    {% call statement('ensure_folder') -%}
        copy (select 1 as k, 1 as v where false) to {{ sql_string(path) }}
        (format parquet, partition_by (k), overwrite_or_ignore true)
    {%- endcall %}
{%- endmacro %}

{#- A SQL string literal. -#}
{% macro sql_string(text) -%}
    '{{ text | replace("'", "''") }}'
{%- endmacro %}
