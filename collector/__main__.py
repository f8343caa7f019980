"""``python -m collector --config config.yaml [--duration-s N] [--symbols A,B] [--clock exchange]``."""

from collector.app import main

if __name__ == "__main__":
    raise SystemExit(main())
