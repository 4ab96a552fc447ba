"""Child process of a coverage-guided campaign: atheris around one in-process target.

Run as ``python -m smtestbed.services.campaigns.atheris_driver TARGET JOURNAL CRASHES
[libFuzzer flags] CORPUS``. ``atheris.Fuzz`` never returns: libFuzzer ends the process when
its time or run budget is spent and prints its statistics on stderr. An unexpected exception
is recorded in the JSON-lines ``JOURNAL`` (deduplicated, input saved under ``CRASHES``) and
the campaign goes on, so one run finds every distinct crash, not just the first; an error in
the harness itself still reaches libFuzzer, which saves the input and exits with 77.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
from smtestbed.services.campaigns.crashes import CrashBook


def main(argv: list[str]) -> None:
    """Instrument the code under test, then fuzz it until libFuzzer ends the process."""
    target, journal, crashes = argv[1], Path(argv[2]), Path(argv[3])
    with atheris.instrument_imports(include=["smtestbed.proto", "smtestbed.services"]):
        from smtestbed.services.campaigns.targets import ALLOWED, TARGETS
    TARGETS[target].prepare()
    run = TARGETS[target].run
    book = CrashBook(target, crashes, journal)

    def one_input(data: bytes) -> None:
        try:
            run(data)
        except ALLOWED:
            pass
        except Exception as exc:
            book.exception(exc, data)

    atheris.Setup([argv[0], *argv[4:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
