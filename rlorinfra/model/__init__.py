"""Domain values shared by every layer: job states and their sets, job IDs and
names, canonical specs and create paths, live snapshots, shape versions.

Pure values and functions: no I/O, no httpx, no click, nothing from the rest of
rlorinfra, so config, state, plan, apply and api may all use them (DESIGN.md §10).
"""
