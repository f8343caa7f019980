"""The cryptofeed sidecar: records OKX WebSocket data losslessly into raw JSONL shards.

Run it with ``python -m collector --config config.yaml``. See :mod:`collector.app` for the
lifecycle, :mod:`collector.okx_feed` for the cryptofeed 2.4.1 fixes, and docs/ARCHITECTURE.md
for the record format and shard layout it writes.
"""
