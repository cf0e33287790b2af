"""Gold: business marts over silver. `transforms` holds the pure rules, `marts` the I/O edge."""

from pipeline.gold.marts import MARTS, build_gold

__all__ = ["MARTS", "build_gold"]
