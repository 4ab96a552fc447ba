"""A sample service: publishes ticks and answers small requests (demos and tests)."""
