"""``python -m collector --config config.yaml [--duration-s N] [--symbols A,B] [--clock exchange]``
and ``python -m collector status --config config.yaml``."""

import signal


def _stop_while_importing(signum: int, _frame: object) -> None:
    # A SIGTERM (supervisorctl stop, systemctl stop) during the second or so of imports: nothing has
    # been written yet, so stop cleanly (exit 0) instead of dying of the signal. The app installs
    # its own handlers before it writes anything.
    raise SystemExit(0)


signal.signal(signal.SIGTERM, _stop_while_importing)

from collector.app import main  # noqa: E402  (after the handler: importing cryptofeed takes a while)

if __name__ == "__main__":
    raise SystemExit(main())
