"""Pure library code (parsing, simulation, statistics). No Dagster imports here."""
