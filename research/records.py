"""Qlib records with crypto annualisation (markets open 365 days a year, 24 hours a day).

Qlib's ``PortAnaRecord`` annualises its risk analysis with a stock market's 238 trading days
(``risk_analysis`` has an ``N`` argument, the record does not pass one). ``CryptoPortAnaRecord``
is the same record with ``N`` = periods per calendar year of the analysed frequency: 365 for
``day``, 8,760 for ``60min``, 525,600 for ``1min``. It also stores the analysis of the
strategy's own return (not only the excess over the benchmark).
"""

from __future__ import annotations

import logging
import warnings
from pprint import pformat

import pandas as pd
from qlib.contrib.evaluate import risk_analysis
from qlib.utils import flatten_dict
from qlib.utils.time import Freq
from qlib.workflow.record_temp import PortAnaRecord

log = logging.getLogger(__name__)

MINUTES_PER_YEAR = 365 * 24 * 60


def periods_per_year(freq: str) -> float:
    """Bars per 365-day year for a Qlib frequency name or a record's ``1day``/``60min`` key."""
    count, unit = Freq.parse(freq)
    if unit == Freq.NORM_FREQ_DAY:
        return 365 / count
    if unit == Freq.NORM_FREQ_MINUTE:
        return MINUTES_PER_YEAR / count
    if unit == Freq.NORM_FREQ_WEEK:
        return 365 / 7 / count
    if unit == Freq.NORM_FREQ_MONTH:
        return 12 / count
    raise ValueError(f"no annualisation for frequency {freq!r}")


class CryptoPortAnaRecord(PortAnaRecord):
    """``PortAnaRecord`` annualising with 365 days a year (see the module docstring).

    Artifacts: everything ``PortAnaRecord`` saves (``report_normal_<f>.pkl``,
    ``positions_normal_<f>.pkl``, ``indicators_normal_<f>.pkl``...) with
    ``port_analysis_<f>.pkl`` recomputed with the crypto ``N`` and holding three blocks:
    ``return_with_cost`` (the strategy), ``excess_return_without_cost`` and
    ``excess_return_with_cost`` (over the benchmark).
    """

    def _generate(self, **kwargs):
        # Qlib's own risk analysis (238-day N) is skipped, not overwritten: its metrics would be
        # logged to MLflow under the same names first.
        freqs, self.risk_analysis_freq = self.risk_analysis_freq, []
        try:
            artifacts = super()._generate(**kwargs)
        finally:
            self.risk_analysis_freq = freqs
        for freq in freqs:
            key = f"report_normal_{freq}.pkl"
            if key not in artifacts:
                warnings.warn(f"no {freq} portfolio report: set generate_portfolio_metrics=True for that executor")
                continue
            report = artifacts[key]
            n = periods_per_year(freq)
            analysis = {
                "return_with_cost": risk_analysis(report["return"] - report["cost"], N=n, freq=None),
                "benchmark": risk_analysis(report["bench"], N=n, freq=None),
                "excess_return_without_cost": risk_analysis(report["return"] - report["bench"], N=n, freq=None),
                "excess_return_with_cost": risk_analysis(
                    report["return"] - report["bench"] - report["cost"], N=n, freq=None
                ),
            }
            frame = pd.concat(analysis)
            metrics = flatten_dict(frame["risk"].unstack().T.to_dict())
            self.recorder.log_metrics(**{f"{freq}.{k}": v for k, v in metrics.items()})
            artifacts[f"port_analysis_{freq}.pkl"] = frame
            log.info("crypto risk analysis (%s, N=%g):\n%s", freq, n, pformat(frame))
        return artifacts
