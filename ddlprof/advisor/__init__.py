"""Instance and price catalog, throughput per option, ranking by cost per throughput."""
