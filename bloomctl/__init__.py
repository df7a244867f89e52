"""bloomctl: operate a BLOOM deployment (start, stop, status, invoke, weights, cost, local mode)."""
