"""``rlorinfra`` with its refresh swapped for per-job GETs, 10 at a time.

The Terraform-style baseline run as a whole tool: the same process, the same
config and state parsing, the same planner and renderer as ``rlorinfra plan``;
only the way the live world is read differs (one GET per tracked job, at
Terraform's default parallelism of 10, instead of paginated LISTs); the
health checks of RUNNING trainers are the product's own, as they are in
``rlorinfra plan`` (pass ``--no-health-check`` to skip them). Used by
bench_plan.py; never part of the product.

Usage: python benchmarks/per_job_refresh.py plan -f CONFIG ...
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

PARALLELISM = 10


def per_job_read(client, tracked):
    """Drop-in for ``refresh._read_by_list``: one GET per tracked job; learns no account size."""
    with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
        found = list(pool.map(client.get_job, tracked))
    jobs = {job.job_id: job for job in found if job is not None}
    missing = {job_id for job_id, job in zip(tracked, found, strict=True) if job is None}
    return jobs, missing, None


def main() -> None:
    import rlorinfra.plan.refresh as refresh
    from rlorinfra.cli.main import main as cli_main

    # The benchmark's states record no listing, so refresh always takes its list path: swap
    # exactly that. (Fail loudly if refresh is restructured, rather than silently measuring
    # the product's own refresh as the "baseline".)
    if not hasattr(refresh, "_read_by_list"):
        raise SystemExit("per_job_refresh.py: rlorinfra.plan.refresh._read_by_list is gone; update this baseline")
    refresh._read_by_list = per_job_read
    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
