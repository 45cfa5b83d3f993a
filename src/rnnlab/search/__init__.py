"""The equal-budget search: each cell tuned with the same number of trials over the same space (conf/search/)."""
