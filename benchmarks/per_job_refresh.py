"""``rlorinfra`` with its refresh swapped for per-job GETs, 10 at a time.

The Terraform-style baseline run as a whole tool: the same process, the same
config and state parsing, the same planner and renderer as ``rlorinfra plan``;
only the way the live world is read differs (one GET per tracked job, at
Terraform's default parallelism of 10, instead of paginated LISTs). Used by
bench_plan.py; never part of the product.

Usage: python benchmarks/per_job_refresh.py plan -f CONFIG ...
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

PARALLELISM = 10


def per_job_read(client, state):
    """Drop-in for ``refresh._read_jobs``: one GET per tracked job."""
    ids = [record.job_id for record in state.jobs.values()]
    with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
        found = list(pool.map(client.get_job, ids))
    jobs = {job.job_id: job for job in found if job is not None}
    missing = {job_id for job_id, job in zip(ids, found, strict=True) if job is None}
    return jobs, missing


def main() -> None:
    import rlorinfra.plan.refresh as refresh
    from rlorinfra.cli.main import main as cli_main

    refresh._read_jobs = per_job_read
    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
