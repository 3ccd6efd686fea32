"""train and evaluate (torch is imported only when these commands run)."""
