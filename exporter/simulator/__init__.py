"""A fake Mudbase API with the real one's contract, for the demo, the tests and benchmarks.

It serves the logs and list endpoints with bearer-token auth, lets executions accrue over time
with a configurable failure ratio, and injects faults switched at run time through `/_sim/*`.
"""
