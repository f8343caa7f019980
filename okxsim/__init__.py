"""Local OKX v5 exchange simulator: the tests' independent oracle (never imports feeder/collector).

* ``okxsim.Market``: pure, in-process ground truth (candles, tickers, funding, open interest).
* ``okxsim.Simulator`` / ``okxsim.run_in_thread``: the TLS REST + WebSocket server in a thread.
* ``python -m okxsim``: the same server as a process (prints one JSON line when ready).
"""

from .market import BARS, Market
from .server import SimConfig, SimServer, Simulator, run_in_thread, wait_until_sim
from .tls import client_context
from .ws import PushConfig

__all__ = ["BARS", "Market", "PushConfig", "SimConfig", "SimServer", "Simulator", "client_context",
           "run_in_thread", "wait_until_sim"]
