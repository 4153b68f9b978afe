"""Rebuild the generated factor files in this folder from the shared public data (see NOTICE.md).

    .venv/bin/python data/factors/build_factors.py [SHARED_DATA_DIR]   (default /work/shared/data)

Generates grid_intensity/*.parquet, grid_annual.csv and water.csv. datacenter.csv, hardware.csv and models.yml are
written by hand (every row cites its source); this script does not touch them. Everything is set-based DuckDB SQL;
rounding is to 4 decimals (grid) and 4 decimals (water), so a rebuild on the same inputs is byte-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data")

EM_DIR = SHARED / "electricitymaps-hourly-carbon-intensity"
CODECARBON = SHARED / "factor-tables-pypi" / "codecarbon-3.3.2"
ECOLOGITS = SHARED / "factor-tables-pypi" / "ecologits-0.11.3"
CARBONTRACKER = SHARED / "factor-tables-pypi" / "carbontracker-2.4.7"
CCF = SHARED / "cloud-carbon-footprint-coefficients"
MALT = SHARED / "making-ai-less-thirsty-factors"

EM_SOURCE = (
    "Electricity Maps hourly carbon intensity, columns direct (location-based, combustion) and LCA (life cycle), "
    "https://www.electricitymaps.com/data-portal, via HewlettPackard/sustain-cluster@293fbd152dae52a4b77fee50362b0b61641f16d1 "
    "data/carbon_intensity/{zone}/{year}/{zone}_{year}_hourly.csv"
)
EM_LICENCE = "ODbL-1.0"
CODECARBON_SOURCE = (
    "codecarbon 3.3.2 (mlco2/codecarbon, PyPI) package data global_energy_mix.json "
    "carbon_intensity (Our World in Data / Ember, lifecycle basis)"
)
# +-20 %: the median disagreement between two independent country compilations (codecarbon vs ecologits 0.11.3) is
# 6 %, the 75th percentile 17 %, the 90th 32 % (213 countries); 20 % covers three in four countries, and the rule
# widens the band further to include both other compilations whenever they lie outside it.
COUNTRY_BAND = 0.20
# Water: +-50 % / the ecologits value. The per-fuel factors are medians over very different cooling technologies
# (NREL, Macknick et al. 2012) and the country fuel mix is annual; hydro counts 0 in these factors.
WATER_LOW = 0.5
WATER_HIGH = 1.5


def main() -> None:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    hourly(con)
    countries(con)
    annual(con)
    water(con)


def hourly(con: duckdb.DuckDBPyConnection) -> None:
    """One Parquet file per Electricity Maps zone-year, in the CONTRACT columns (+ lifecycle, estimated, provenance),
    typed (datetime_utc a UTC timestamp): the loader reads 100,000 shipped hours in well under a second, where
    parsing as many CSV lines cost seconds on every run. (Read one with duckdb: select * from 'GB_2023.parquet'.)"""
    out = HERE / "grid_intensity"
    out.mkdir(exist_ok=True)
    for path in sorted(EM_DIR.glob("*_hourly.csv")):
        stem = path.name[: -len("_hourly.csv")]
        con.execute(
            f"""
            create or replace temp table em as
            select trim("Zone Id") as zone,
                   cast("Datetime (UTC)" as timestamp) as ts,
                   cast("Carbon Intensity gCO₂eq/kWh (direct)" as double) as direct,
                   cast("Carbon Intensity gCO₂eq/kWh (LCA)" as double) as lca,
                   cast("Data Estimated" as boolean) as estimated
            from read_csv('{path}', all_varchar = true, header = true)
            """
        )
        (zone,) = con.execute("select any_value(zone) from em").fetchone()
        year = stem.rsplit("_", 1)[1]
        con.execute(
            f"""
            copy (
                select zone,
                       ts as datetime_utc,
                       direct as location_g_co2e_per_kwh,
                       cast(null as double) as market_g_co2e_per_kwh,
                       lca as lifecycle_g_co2e_per_kwh,
                       estimated,
                       replace(replace($src, '{{zone}}', {_file_zone(stem)!r}), '{{year}}', cast(year(ts) as varchar))
                           as source,
                       '{EM_LICENCE}' as licence,
                       cast(year(ts) as varchar) as version
                from em order by ts
            ) to '{out / f"{zone}_{year}.parquet"}' (format parquet, compression zstd)
            """.replace("$src", "'" + EM_SOURCE.replace("'", "''") + "'")
        )


def _file_zone(stem: str) -> str:
    return stem.rsplit("_", 1)[0]


def countries(con: duckdb.DuckDBPyConnection) -> None:
    """codecarbon's country mix joined to ISO 3166-1 alpha-2 codes (carbontracker's table carries both codes;
    read as text so Namibia's 'NA' stays a code) and to ecologits' zone values."""
    con.execute(
        f"""
        create or replace temp table iso as
        select "Code" as iso3, "alpha-2" as iso2,
               try_cast("Carbon intensity of electricity (gCO2eq/kWh)" as double) as ct_ci, "Year" as ct_year
        from read_csv('{CARBONTRACKER / "carbon-intensities.csv"}', all_varchar = true, header = true,
                      nullstr = '')
        """
    )
    con.execute(
        f"""
        create or replace temp table mix as
        select m.*, i.iso2, i.ct_ci,
               cast(e.gwp_kgCO2eq_per_kWh as double) * 1000 as eco_ci,
               cast(e.wue_L_per_kWh as double) as eco_wue,
               coalesce(e.warnings, '') like '%wue-world%' as eco_wue_world
        from read_csv('{CODECARBON / "global_energy_mix_flat.csv"}', header = true) m
        join iso i on i.iso3 = m.iso_code_key
        left join read_csv('{ECOLOGITS / "electricity_mixes_flat.csv"}', header = true, nullstr = '') e
            on e.name = m.iso_code_key
        """
    )


def annual(con: duckdb.DuckDBPyConnection) -> None:
    em_src = EM_SOURCE.replace("'", "''")
    cc_src = CODECARBON_SOURCE.replace("'", "''")
    band = COUNTRY_BAND
    con.execute(
        f"""
        create or replace temp table annual as
        -- (a) Electricity Maps zone-years: mean of the hourly direct values, 5th/95th hourly percentiles
        select zone, cast(year(ts) as integer) as year,
               round(avg(direct), 4) as location_g_co2e_per_kwh,
               cast(null as double) as market_g_co2e_per_kwh,
               round(quantile_cont(direct, 0.05), 4) as low_g_co2e_per_kwh,
               round(quantile_cont(direct, 0.95), 4) as high_g_co2e_per_kwh,
               round(avg(lca), 4) as lifecycle_g_co2e_per_kwh,
               'direct' as basis,
               'mean of the hourly direct values of ' || replace(replace('{em_src}', '{{zone}}', file_zone),
                   '{{year}}', cast(year(ts) as varchar))
                   || '; low/high = 5th/95th percentile of the hourly values' as source,
               '{EM_LICENCE}' as licence,
               cast(year(ts) as varchar) as version
        from (
            select trim("Zone Id") as zone,
                   regexp_extract(filename, '([^/]+)_[0-9]{{4}}_hourly\\.csv$', 1) as file_zone,
                   cast("Datetime (UTC)" as timestamp) as ts,
                   cast("Carbon Intensity gCO₂eq/kWh (direct)" as double) as direct,
                   cast("Carbon Intensity gCO₂eq/kWh (LCA)" as double) as lca
            from read_csv('{EM_DIR}/*_hourly.csv', all_varchar = true, header = true, filename = true)
        )
        group by zone, file_zone, year(ts)

        union all
        -- (b) countries: codecarbon (Ember/OWID, lifecycle basis); band +-20 % widened to ecologits and carbontracker
        select iso2, cast(year as integer),
               round(carbon_intensity, 4), null,
               round(least({1 - band} * carbon_intensity, coalesce(eco_ci, 1e9), coalesce(ct_ci, 1e9)), 4),
               round(greatest({1 + band} * carbon_intensity, coalesce(eco_ci, 0), coalesce(ct_ci, 0)), 4),
               round(carbon_intensity, 4),
               'lifecycle',
               '{cc_src}, ' || iso_code_key || ' (' || country_name || ', ' || year || '); low/high = value '
                   || '-/+20 % widened to include ecologits 0.11.3 electricity_mixes gwp ('
                   || coalesce(cast(round(eco_ci, 1) as varchar), 'n/a') || ') and carbontracker 2.4.7 '
                   || 'carbon-intensities.csv (' || coalesce(cast(round(ct_ci, 1) as varchar), 'n/a') || ')',
               'MIT (codecarbon); range also uses MPL-2.0 (ecologits) and MIT (carbontracker) values',
               'codecarbon 3.3.2, data year ' || year
        from mix
        -- a country whose Electricity Maps zone-year is shipped keeps the hourly-derived row only
        where (iso2, cast(year as integer)) not in (
            select (trim("Zone Id"), cast(year(cast("Datetime (UTC)" as timestamp)) as integer))
            from read_csv('{EM_DIR}/*_hourly.csv', all_varchar = true, header = true)
        )

        union all
        -- (d) WORLD: generation-weighted mean of the codecarbon country intensities
        select 'WORLD', null,
               round(sum(carbon_intensity * total_TWh) / sum(total_TWh), 4), null,
               round(least({1 - band} * sum(carbon_intensity * total_TWh) / sum(total_TWh), 458.29, 475), 4),
               round(greatest({1 + band} * sum(carbon_intensity * total_TWh) / sum(total_TWh), 458.29, 475), 4),
               round(sum(carbon_intensity * total_TWh) / sum(total_TWh), 4),
               'lifecycle',
               'generation-weighted mean over the ' || count(*) || ' countries of {cc_src} (data years 2021-2023, '
                   || round(sum(total_TWh)) || ' TWh); low/high = value -/+20 % widened to include ecologits '
                   || '0.11.3 WOR (458.29) and codecarbon carbon_intensity_per_source.json world_average '
                   || '(475, IEA Global Energy & CO2 Status Report 2019)',
               'MIT (codecarbon); range also uses an MPL-2.0 (ecologits) value',
               'codecarbon 3.3.2'
        from read_csv('{CODECARBON / "global_energy_mix_flat.csv"}', header = true)

        union all
        -- (c) cloud regions: Google's published region values (codecarbon impact.csv)
        select 'gcp:' || region, null, cast(impact as double), null,
               round({1 - band} * impact, 4), round({1 + band} * impact, 4), null, 'unspecified',
               'codecarbon 3.3.2 (PyPI) package data impact.csv (Google Cloud region carbon data, '
                   || source || ', ' || region || ' ' || city || '); low/high = value -/+20 % (no range published)',
               'MIT (codecarbon)', 'codecarbon 3.3.2'
        from (select * replace (cast(impact as double) as impact)
              from read_csv('{CODECARBON / "impact.csv"}', header = true, all_varchar = true))

        union all
        -- (c) cloud regions: Cloud Carbon Footprint grid factors for AWS and Azure (metric t/kWh -> g/kWh)
        select provider || ':' || region, null, round(t_per_kwh * 1e6, 4), null,
               round({1 - band} * t_per_kwh * 1e6, 4), round({1 + band} * t_per_kwh * 1e6, 4), null,
               case when src = 'EPA' then 'direct' else 'unspecified' end,
               'Cloud Carbon Footprint ccf-coefficients@b0032d928c787cf76cecd7d1d611c5b46f366e29 '
                   || 'data/grid-emissions-factors-' || provider || '.csv (' || region || ', ' || location
                   || ', source ' || src || '); low/high = value -/+20 % (no range published)',
               'Apache-2.0', 'ccf-coefficients@b0032d9'
        from (
            select 'aws' as provider, trim("Region") as region, trim("Country") as location,
                   cast("CO2e (metric ton/kWh)" as double) as t_per_kwh, trim("Source") as src
            from read_csv('{CCF / "data_grid-emissions-factors-aws.csv"}', header = true, all_varchar = true)
            union all
            select 'azure', lower(replace(trim("Region"), ' ', '')), trim("Location"),
                   cast("CO2e (metric ton/kWh)" as double), trim("Source")
            -- two rows of this file are malformed upstream (Finland '000077' with an extra field, Germany
            -- '000402'): the reader drops the first, the '0.' filter below the second
            from read_csv('{CCF / "data_grid-emissions-factors-azure.csv"}', header = true, all_varchar = true,
                          delim = ',', ignore_errors = true)
            where trim("CO2e (metric ton/kWh)") like '0.%'
        )
        where region <> '' and t_per_kwh is not null
        """
    )
    con.execute(
        f"""
        copy (select * from annual order by (zone = 'WORLD') desc, basis = 'direct' desc, zone, year)
        to '{HERE / "grid_annual.csv"}' (header)
        """
    )


def water(con: duckdb.DuckDBPyConnection) -> None:
    """EWIF = sum over fuels of generation share x the per-fuel water consumption factor (Making AI Less Thirsty)."""
    con.execute(
        f"""
        create or replace temp table f as
        select fuel_type, cast(ewif_L_per_kWh as double) as l
        from read_csv('{MALT / "fuel_water_and_carbon_factors.csv"}', header = true)
        """
    )
    # codecarbon fuel columns -> EIA fuel codes of the MALT factors; biofuel and other renewables count as 'OTH'
    mix_sum = """(
        coal_TWh * (select l from f where fuel_type = 'COL')
        + gas_TWh * (select l from f where fuel_type = 'NG')
        + oil_TWh * (select l from f where fuel_type = 'OIL')
        + nuclear_TWh * (select l from f where fuel_type = 'NUC')
        + other_renewable_TWh * (select l from f where fuel_type = 'OTH')
        + hydroelectricity_TWh * (select l from f where fuel_type = 'WAT')
        + solar_TWh * (select l from f where fuel_type = 'SUN')
        + wind_TWh * (select l from f where fuel_type = 'WND'))"""
    src = (
        "generation-weighted mean of the per-fuel operational water consumption factors of Making-AI-Less-Thirsty "
        "(Ren-Research/Making-AI-Less-Thirsty@d0014defd0fe1b67dd2bb842781e23e214c7f4bb utils/dataloader.py; "
        "NREL/Macknick et al. 2012: NG 1.136, coal 1.703, oil 1.325, nuclear 2.271, other 1.798, hydro/solar/wind 0 "
        "L/kWh) over the country generation mix of codecarbon 3.3.2 global_energy_mix.json (coal, gas, oil, "
        "nuclear, hydro, solar, wind, other renewables incl. biofuel as other)"
    ).replace("'", "''")
    con.execute(
        f"""
        create or replace temp table water as
        select iso2 as zone,
               round({mix_sum} / total_TWh, 4) as ewif_l_per_kwh,
               round({WATER_LOW} * {mix_sum} / total_TWh, 4) as low_l_per_kwh,
               round(greatest({WATER_HIGH} * {mix_sum} / total_TWh, eco_wue), 4) as high_l_per_kwh,
               '{src}, ' || iso_code_key || ' ' || year || '; low = 0.5 x value; high = max(1.5 x value, '
                   || 'ecologits 0.11.3 electricity_mixes wue ' || eco_wue || ' L/kWh'
                   || case when eco_wue_world then ' (ecologits falls back to its world value for this zone)'
                      else '' end || ')' as source,
               'MIT (Making-AI-Less-Thirsty, codecarbon); high bound uses an MPL-2.0 (ecologits) value' as licence,
               'codecarbon 3.3.2 mix year ' || year || '; MALT@d0014de' as version
        from mix where total_TWh > 0
        union all
        select 'WORLD',
               round(sum({mix_sum}) / sum(total_TWh), 4),
               round({WATER_LOW} * sum({mix_sum}) / sum(total_TWh), 4),
               round(greatest({WATER_HIGH} * sum({mix_sum}) / sum(total_TWh), 3.908), 4),
               '{src}, summed over all ' || count(*) || ' countries (' || round(sum(total_TWh)) || ' TWh, data '
                   || 'years 2021-2023); low = 0.5 x value; high = max(1.5 x value, ecologits 0.11.3 WOR wue 3.908 L/kWh)',
               'MIT (Making-AI-Less-Thirsty, codecarbon); high bound uses an MPL-2.0 (ecologits) value',
               'codecarbon 3.3.2; MALT@d0014de'
        from read_csv('{CODECARBON / "global_energy_mix_flat.csv"}', header = true)
        """
    )
    con.execute(f"copy (select * from water order by zone = 'WORLD' desc, zone) to '{HERE / 'water.csv'}' (header)")


if __name__ == "__main__":
    main()
