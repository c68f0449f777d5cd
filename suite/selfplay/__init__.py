"""Self-play for the research benchmark: pgx games, mctx search, the replay window and the
arena against a fixed opponent. Pure functions of arrays; suite.loops.selfplay jits and
shards them."""
