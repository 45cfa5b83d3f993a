"""Evidence for or against the article's claims: seeds statistics, gradient decay, the adding problem."""
