"""For tests/test_cell_api.py: RNNLAB_CELLS naming a module that defines no CELL is an error."""

CELLS = ()  # a near miss: CELLS, not CELL
