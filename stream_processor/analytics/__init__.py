"""Analytics: the read side. Questions over the Parquet history (SQL, state as of an
instant, the fleet report), its upkeep (compaction) and replaying it into state."""
