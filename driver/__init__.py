"""What drives the workflow from outside: the scheduler (``python -m driver.schedule``).

Kept out of the ``feeder`` library because it starts Snakemake and edits Snakemake's own state
(``.snakemake/locks``); the library holds the stages' logic and never runs the workflow.
May import ``feeder``; nothing in ``feeder``, ``collector`` or ``okxsim`` imports it.
"""
