"""The network: the cells written out from their equations, the recurrent encoder, the whole network."""
