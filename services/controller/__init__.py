"""The controller: defined testbed states, the atomic test API, scenarios, runner and report.

Writing a scenario
==================
Add one module to ``smtestbed/services/controller/scenarios/`` (the folder
``services/controller/scenarios/``) that defines ``SCENARIO``; it is found by name::

    from smtestbed.proto import topics
    from smtestbed.services.controller.client import Controller
    from smtestbed.services.controller.scenario import Scenario
    from smtestbed.services.controller.state import state_from_dict

    async def run(ctl: Controller) -> None:
        meter = ctl.meters[0]                       # wireless meters of the population
        await ctl.advance(by=600)                   # sensorfarm.advance + gateway.sync
        mark = ctl.mark()                           # events after this are new
        await ctl.call("meter_key", meter=meter, key="00" * 16)   # any operation by name
        await ctl.advance(by=900)
        await ctl.expect_event(topics.GATEWAY_FRAME_REJECTED, {"meter": meter}, since=mark)
        ctl.expect_equal("stored since", len(await ctl.readings(meter, t0=...)), 0)

    SCENARIO = Scenario(
        name="my-scenario",
        description="one line for the results table",
        state=state_from_dict({"seed": 3, "population": {"count": 4}}),
        run=run,
        control={"settings": {"gateway": {"unsafe_skip_checks": ["mac"]}}},
    )

- ``state`` is a :class:`~.state.TestbedState`: seed, clock, population or explicit
  meters, keys set at the meter, channel receivers/faults/interferers, gateway
  registry (``all``/``none``/ids) and TAF assignments, wired line, PKI, relays and
  per-service setting overrides (``settings = {"gateway": {...}}``). Keep
  populations small: every run starts a fresh testbed.
- ``run`` acts only through ``ctl.call(<operation>, ...)`` and the shortcuts of
  :class:`~.client.Controller`; ``smtb controller operations`` lists the operations.
  Take ``ctl.mark()`` *before* acting and wait with ``since=mark``: no race.
- Every expectation goes through ``ctl.check``/``expect_*``: it is recorded in
  ``results.json`` and a failed one raises :class:`~.client.ScenarioFailed`.
- ``control`` is merged into ``state`` for the negative control, which must FAIL;
  pick the override that switches off exactly what the scenario proves. A control
  that passes is reported as ``passed-unexpectedly`` and fails the run.

Run it: ``smtb scenario run my-scenario`` (report in ``smtb-report/``), or from
pytest (``tests/scenarios/test_my_scenario.py``) with the plugin's fixture::

    def test_my_scenario(smtb_scenario):
        smtb_scenario("my-scenario").expect_passed()
        smtb_scenario("my-scenario", control=True).expect_failed()
"""
