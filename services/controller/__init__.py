"""The controller: defined testbed states, scenarios, their runner and the run report."""
