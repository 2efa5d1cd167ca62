"""coffee-ml: a research workbench for machine learning on crypto markets.

Data flows one way: store -> features -> windows -> model -> predictions -> backtest -> report.
"""

__version__ = "0.1.0"
