"""Operating one warehouse for many users: the run lock, publishing for analysts, the Parquet parts, retention,
the dbt launcher (docs/operations.md). Pure code: no Dagster imports, and no heavy imports at package level (the
dbt launcher imports this package before every dbt command)."""
