"""A service that cannot bind its endpoint exits at once with the reason, never hangs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import zmq
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.lifecycle import EXIT_ERROR
from smtestbed.services._runtime.testing import endpoint_env, free_port


def test_gateway_with_its_input_in_use_exits_naming_the_endpoint(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """The gateway's PULL input already bound elsewhere: exit code 1 and a log line, no hang."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.PULL)
    squatter.bind(endpoint)
    try:
        done = subprocess.run(
            [
                *process.service_argv("gateway"),
                "--set",
                f"input_endpoint={endpoint}",
                "--set",
                f"data_dir={tmp_path / 'gw'}",
            ],
            env={**os.environ, **endpoint_env(endpoints), "SMTB_COMMON_LOG_FORMAT": "json"},
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        squatter.close(linger=0)
        ctx.term()
    output = (done.stdout + done.stderr).decode().splitlines()
    lines = [json.loads(line) for line in output if line.startswith("{")]
    failed = [entry for entry in lines if entry["event"] == "service_failed"]
    assert done.returncode == EXIT_ERROR, output[-20:]
    assert failed, lines
    assert f"cannot bind {endpoint}" in failed[0]["error"]
