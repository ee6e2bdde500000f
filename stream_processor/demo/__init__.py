"""The local demo: a deterministic fleet simulator, the run on an embedded AWS endpoint, and
the check of state and history against the simulator's ground truth."""
