"""Physics tests: real MCsquare runs with few primaries on small grids."""
