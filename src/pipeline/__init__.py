"""Medallion lakehouse job suite: bronze, silver and gold Delta tables on EMR or a laptop."""
