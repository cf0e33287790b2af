"""Bronze: every landing record, parsed or kept raw as a corrupt record, with audit columns."""
